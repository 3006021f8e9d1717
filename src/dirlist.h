/* dirlist.h - sorted listings of one directory's entries. */
#ifndef CKPT_DIRLIST_H
#define CKPT_DIRLIST_H

#include <stddef.h>

/* Lists the entry names of dir for which keep(name) is true (all when keep
 * is NULL; "." and ".." never), sorted with strcmp.  On success the caller
 * frees the list with ckpt_names_free().  Returns 0 or -errno. */
int ckpt_dir_list(const char *dir, int (*keep)(const char *name), char ***names, size_t *n);

void ckpt_names_free(char **names, size_t n);

#endif

/* dirlist.h - directory helpers: sorted listings of one directory's entries,
 * and opening a file confined to a directory. */
#ifndef CKPT_DIRLIST_H
#define CKPT_DIRLIST_H

#include <stddef.h>
#include <sys/types.h>

#include "err.h"

/* Lists the entry names of dir for which keep(name) is true (all when keep
 * is NULL; "." and ".." never), sorted with strcmp.  On success the caller
 * frees the list with ckpt_names_free().  Returns 0 or -errno. */
int ckpt_dir_list(const char *dir, int (*keep)(const char *name), char ***names, size_t *n);

void ckpt_names_free(char **names, size_t n);

/* Checks that rel is a safe relative path inside realdir (no absolute path,
 * no "..", no symlink leading out) naming a regular file, and opens it
 * read-only (without blocking on FIFOs).  Used for paths taken from
 * checkpoint metadata.  Returns an fd or -errno with a message in e. */
int ckpt_open_inside(const char *realdir, const char *rel, struct ckpt_err *e);

/* mkdir -p: creates path and its missing parents with mode (existing ones
 * are fine).  Returns 0 or -errno. */
int ckpt_mkdir_p(const char *path, mode_t mode);

#endif

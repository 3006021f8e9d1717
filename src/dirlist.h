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

/* Opens rel, a path taken from checkpoint metadata, read-only (without
 * blocking on FIFOs) if it names a regular file inside realdir (a canonical
 * path): rel may not be empty or absolute or contain "..", and no symlink
 * on the way may leave realdir.  With openat2 (Linux >= 5.6) the kernel
 * resolves rel beneath realdir in the open itself (RESOLVE_BENEATH |
 * RESOLVE_NO_MAGICLINKS: absolute symlinks, symlinks out and /proc magic
 * links are refused), so swapping a component for a symlink after a check
 * cannot redirect the open; without it, realpath() is checked and then
 * opened (racy).  Returns an fd or -errno with a message in e (-EPERM for
 * a path that leaves realdir). */
int ckpt_open_inside(const char *realdir, const char *rel, struct ckpt_err *e);

/* mkdir -p: creates path and its missing parents with mode (existing ones
 * are fine).  Returns 0 or -errno. */
int ckpt_mkdir_p(const char *path, mode_t mode);

/* Tests only: nonzero makes ckpt_open_inside take its path for kernels
 * without openat2. */
extern int ckpt_dirlist_fallback;

#endif

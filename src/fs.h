/* fs.h - the FUSE front end: a read-only low-level filesystem over an engine. */
#ifndef CKPT_FS_H
#define CKPT_FS_H

#include "engine.h"

struct fuse_args;

struct ckpt_run;

/* Mounts engine g (one checkpoint) or run (a run root; g NULL) at
 * mountpoint and serves requests until unmounted.  args carries the
 * remaining libfuse options (-o allow_other, ...).  foreground /
 * single_thread mirror -f / -s.  Returns 0 or -errno. */
int ckpt_fs_serve(struct ckpt_engine *g, struct ckpt_run *run, struct fuse_args *args,
		  const char *mountpoint, int foreground, int single_thread, int clone_fd,
		  unsigned max_threads);

#endif

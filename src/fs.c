/* fs.c - FUSE low-level operations over an engine; see fs.h.
 *
 * The tree is one directory (inode 1) holding the layout's files (inode
 * index + 2).  Content never changes while mounted, so entries and
 * attributes are cached by the kernel for a day and pages are kept across
 * opens (keep_cache).  Every operation only reads immutable engine state;
 * reads go through ckpt_engine_read, which is thread-safe.  Times are the
 * checkpoint metadata's mtime, so cp -p and rsync see a stable source. */
#define FUSE_USE_VERSION 312
#include "config.h"
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <fuse_lowlevel.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define TIMEOUT 86400.0
#define ROOT_INO 1

struct fs {
	struct ckpt_engine *g;
	const char *mountpoint;
	time_t mtime;
	uid_t uid;
	gid_t gid;
};

static void raise_readahead(const char *mountpoint);

/* The kernel clamps the mount's readahead to what the INIT reply allowed, so
 * it is raised once the first request after INIT arrives.  One mount per
 * process, hence the file-scope pointer for pthread_once. */
static pthread_once_t ra_once = PTHREAD_ONCE_INIT;
static const char *ra_mountpoint;

static void ra_raise(void)
{
	raise_readahead(ra_mountpoint);
}

static struct fs *fs_of(fuse_req_t req)
{
	pthread_once(&ra_once, ra_raise);
	return fuse_req_userdata(req);
}

static int fill_attr(struct fs *fs, fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_atime = st->st_mtime = st->st_ctime = fs->mtime;
	st->st_blksize = 1 << 20;
	if (ino == ROOT_INO) {
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
		return 0;
	}
	if (ino < 2 || ino - 2 >= fs->g->layout.n)
		return -ENOENT;
	st->st_mode = S_IFREG | 0444;
	st->st_nlink = 1;
	st->st_size = (off_t)fs->g->layout.f[ino - 2].size;
	st->st_blocks = (st->st_size + 511) / 512;
	return 0;
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	conn->max_background = 64;
	conn->congestion_threshold = 48;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct fuse_entry_param ep;
	int i;

	if (parent != ROOT_INO) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	if ((i = ckpt_layout_find(&fs->g->layout, name)) < 0) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	memset(&ep, 0, sizeof(ep));
	ep.ino = (fuse_ino_t)i + 2;
	ep.generation = 1;
	ep.attr_timeout = ep.entry_timeout = TIMEOUT;
	fill_attr(fs, ep.ino, &ep.attr);
	fuse_reply_entry(req, &ep);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	(void)fi;
	if (fill_attr(fs_of(req), ino, &st))
		fuse_reply_err(req, ENOENT);
	else
		fuse_reply_attr(req, &st, TIMEOUT);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	char *buf;
	size_t used = 0, n = fs->g->layout.n + 2;
	(void)fi;

	if (ino != ROOT_INO) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	if (!(buf = malloc(size))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (size_t i = (size_t)off; i < n; i++) {
		struct stat st = { 0 };
		const char *name = i == 0 ? "." : i == 1 ? ".." : fs->g->layout.f[i - 2].name;
		st.st_ino = i < 2 ? ROOT_INO : (fuse_ino_t)i;
		st.st_mode = i < 2 ? S_IFDIR : S_IFREG;
		size_t need = fuse_add_direntry(req, buf + used, size - used, name, &st, (off_t)i + 1);
		if (need > size - used)
			break;
		used += need;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	if (ino == ROOT_INO) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if (ino < 2 || ino - 2 >= fs->g->layout.n) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct ckpt_err e = { 0 };
	uint8_t *buf;
	size_t got;
	(void)fi;

	if (ino < 2 || ino - 2 >= fs->g->layout.n || off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (!(buf = malloc(size ? size : 1))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (ckpt_engine_read(fs->g, ino - 2, (uint64_t)off, size, buf, &got, &e)) {
		ckpt_print_line(stderr, "ckptfs: read of %s at %lld+%zu failed: %s",
				fs->g->layout.f[ino - 2].name, (long long)off, size, e.msg);
		fuse_reply_err(req, EIO);  /* never wrong bytes */
	} else {
		fuse_reply_buf(req, (const char *)buf, got);
	}
	free(buf);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = fs_of(req);
	struct statvfs sv;
	uint64_t total = 0;
	(void)ino;

	for (size_t i = 0; i < fs->g->layout.n; i++)
		total += fs->g->layout.f[i].size;
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = sv.f_frsize = 4096;
	sv.f_blocks = (total + 4095) / 4096;
	sv.f_files = fs->g->layout.n + 1;
	sv.f_namemax = 255;
	fuse_reply_statfs(req, &sv);
}

static const struct fuse_lowlevel_ops ops = {
	.init = op_init,
	.lookup = op_lookup,
	.getattr = op_getattr,
	.readdir = op_readdir,
	.open = op_open,
	.read = op_read,
	.statfs = op_statfs,
};

/* Raises the kernel readahead of the new mount to 1 MiB (the kernel default
 * of 128 KiB caps every FUSE read at that size; fuse-performance.md A.2).
 * The mount's device number comes from /proc/self/mountinfo, since a stat()
 * of the mount point would wait for this very daemon.  Needs write access to
 * sysfs (root); silently does nothing otherwise. */
static void raise_readahead(const char *mountpoint)
{
	char esc[PATH_MAX * 4], line[PATH_MAX * 4 + 256], path[128];
	unsigned maj = 0, min = 0;
	size_t n = 0;
	int found = 0;
	FILE *f;

	for (const char *p = mountpoint; *p && n + 5 < sizeof(esc); p++) {
		if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\\')
			n += (size_t)snprintf(esc + n, sizeof(esc) - n, "\\%03o", (unsigned char)*p);
		else
			esc[n++] = *p;
	}
	esc[n] = '\0';
	if (!(f = fopen("/proc/self/mountinfo", "r")))
		return;
	while (fgets(line, sizeof(line), f)) {
		char mp[sizeof(line)];
		unsigned a, b;
		if (sscanf(line, "%*u %*u %u:%u %*s %s", &a, &b, mp) == 3 && strcmp(mp, esc) == 0) {
			maj = a;
			min = b;
			found = 1;  /* the last match is the newest mount */
		}
	}
	fclose(f);
	if (!found)
		return;
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", maj, min);
	if ((f = fopen(path, "w"))) {
		fputs("1024\n", f);
		fclose(f);
	}
}

int ckpt_fs_serve(struct ckpt_engine *g, struct fuse_args *args, const char *mountpoint,
		  int foreground, int single_thread, int clone_fd, unsigned max_threads)
{
	struct fs fs = { .g = g, .mountpoint = mountpoint, .mtime = (time_t)g->cat.mtime, .uid = getuid(), .gid = getgid() };
	struct fuse_session *se;
	int rc = -EIO;

	if (fuse_opt_add_arg(args, "-oro,default_permissions,fsname=ckptfs,subtype=ckptfs"))
		return -ENOMEM;
	se = fuse_session_new(args, &ops, sizeof(ops), &fs);
	if (!se)
		return -EINVAL;
	if (fuse_set_signal_handlers(se) != 0)
		goto out_destroy;
	if (fuse_session_mount(se, mountpoint) != 0)
		goto out_signals;
	ra_mountpoint = mountpoint;
	fuse_daemonize(foreground);
	if (single_thread) {
		rc = fuse_session_loop(se);
	} else {
		struct fuse_loop_config *cfg = fuse_loop_cfg_create();
		if (!cfg) {
			rc = -ENOMEM;
			goto out_unmount;
		}
		fuse_loop_cfg_set_clone_fd(cfg, (unsigned)clone_fd);
		fuse_loop_cfg_set_max_threads(cfg, max_threads);
		rc = fuse_session_loop_mt(se, cfg);
		fuse_loop_cfg_destroy(cfg);
	}
	rc = rc < 0 ? rc : 0;
out_unmount:
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_destroy:
	fuse_session_destroy(se);
	return rc;
}

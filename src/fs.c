/* fs.c - FUSE low-level operations over an engine or a run root; see fs.h.
 *
 * One checkpoint: the root directory holds the layout's files.  A run root:
 * the root holds one directory per complete step plus a "latest" symlink,
 * and is rescanned so steps saved while mounted appear (short timeouts on
 * the root only).  A checkpoint's content never changes, so its entries and
 * attributes are cached by the kernel for a day and pages are kept across
 * opens (keep_cache).  Reads go through ckpt_engine_read, which is
 * thread-safe.  Times are the checkpoint metadata's mtime, so cp -p and
 * rsync see a stable source. */
#define FUSE_USE_VERSION 312
#include "config.h"
#include "fs.h"
#include "rundir.h"

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
#define RUN_TIMEOUT 1.0      /* run root: new steps must show up */
#define RESCAN_MS 1000
#define ROOT_INO 1
#define LATEST_INO 2         /* run mode: the "latest" symlink */

/* Inodes: 1 the root.  Single checkpoint: file k is k + 2, .ckptfs-stats
 * STATS_X.  Run root: step s has s + 1 in the high 32 bits; the low ones are
 * sub << 30 | x, where sub 0 is the step directory itself and 1 / 2 its
 * model/ and ema/ view directories (split steps only), and x is 1 for the
 * directory, k + 2 for its file k and STATS_X for its .ckptfs-stats. */
#define SUB_SHIFT 30
#define X_MASK 0x3fffffffu
#define STATS_X X_MASK
#define STATS_NAME ".ckptfs-stats"
#define INO(s, sub, x) (((fuse_ino_t)(s) + 1) << 32 | (fuse_ino_t)(sub) << SUB_SHIFT | (fuse_ino_t)(x))
#define STEP_INO(s) INO(s, 0, 1)

struct fs {
	struct ckpt_engine *g;   /* single checkpoint, or NULL */
	struct ckpt_run *run;    /* run root, or NULL */
	const char *mountpoint;
	time_t mtime;
	uid_t uid;
	gid_t gid;
};

/* What an inode stands for. */
enum node_kind { N_NONE, N_ROOT, N_STEP, N_VIEW, N_FILE, N_LATEST, N_STATS };
struct node {
	enum node_kind kind;
	struct ckpt_engine *g;   /* N_FILE, N_STATS */
	size_t step, file;
	int sub;                 /* 0, or the view (CKPT_VIEW_*) of a split step */
};

static const char *const view_dir[] = { NULL, "model", "ema" };

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

static struct node resolve(struct fs *fs, fuse_ino_t ino)
{
	struct node n = { N_NONE, NULL, 0, 0, 0 };
	uint64_t hi = ino >> 32, lo = ino & 0xffffffffu;

	if (ino == ROOT_INO) {
		n.kind = N_ROOT;
	} else if (!fs->run) {
		if (hi == 0 && lo == STATS_X) {
			n.kind = N_STATS;
			n.g = fs->g;
		} else if (hi == 0 && lo >= 2 && lo - 2 < fs->g->layout.n) {
			n.kind = N_FILE;
			n.g = fs->g;
			n.file = lo - 2;
		}
	} else if (ino == LATEST_INO) {
		n.kind = N_LATEST;
	} else if (hi > 0) {
		int visible = 0, sub = (int)(lo >> SUB_SHIFT);
		uint64_t x = lo & X_MASK;
		n.step = hi - 1;
		if (!ckpt_run_step(fs->run, n.step, &visible, NULL) || !visible || sub > 2)
			return n;
		if (x == 1 && sub == 0) {
			n.kind = N_STEP;
			return n;
		}
		int split = ckpt_run_split(fs->run, n.step);
		if (split != (sub != 0))
			return n;  /* files of a split step live in its view directories */
		n.sub = sub;
		if (x == 1) {
			n.kind = N_VIEW;
			return n;
		}
		struct ckpt_err e = { 0 };
		n.g = sub ? ckpt_run_view_engine(fs->run, n.step, sub, &e)
			  : ckpt_run_engine(fs->run, n.step, &e);
		if (n.g && x == STATS_X) {
			n.kind = N_STATS;
		} else if (n.g && x - 2 < n.g->layout.n) {
			n.kind = N_FILE;
			n.file = x - 2;
		}
	}
	return n;
}

static int fill_attr(struct fs *fs, fuse_ino_t ino, struct stat *st)
{
	struct node n = resolve(fs, ino);
	char buf[PATH_MAX];

	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_atime = st->st_mtime = st->st_ctime = fs->mtime;
	st->st_blksize = 1 << 20;
	switch (n.kind) {
	case N_ROOT:
	case N_STEP:
	case N_VIEW:
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
		return 0;
	case N_LATEST:
		if (!ckpt_run_latest(fs->run, buf, sizeof(buf)))
			return -ENOENT;
		st->st_mode = S_IFLNK | 0444;
		st->st_nlink = 1;
		st->st_size = (off_t)strlen(buf);
		return 0;
	case N_STATS:  /* size 0: served with direct_io, content made on read */
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		return 0;
	case N_FILE:
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = (off_t)n.g->layout.f[n.file].size;
		st->st_blocks = (st->st_size + 511) / 512;
		st->st_mtime = st->st_ctime = st->st_atime = (time_t)n.g->cat.mtime;
		return 0;
	default:
		return -ENOENT;
	}
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	conn->max_background = 64;
	conn->congestion_threshold = 48;
}

static void reply_entry(fuse_req_t req, struct fs *fs, fuse_ino_t ino, double timeout)
{
	struct fuse_entry_param ep;

	memset(&ep, 0, sizeof(ep));
	ep.ino = ino;
	ep.generation = 1;
	ep.attr_timeout = ep.entry_timeout = timeout;
	if (fill_attr(fs, ino, &ep.attr))
		fuse_reply_err(req, ENOENT);
	else
		fuse_reply_entry(req, &ep);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct node p = resolve(fs, parent);
	struct ckpt_engine *g = NULL;
	size_t step = 0;
	int i;

	if (p.kind == N_ROOT && fs->run) {
		if (!strcmp(name, "latest")) {
			reply_entry(req, fs, LATEST_INO, RUN_TIMEOUT);
			return;
		}
		long s = ckpt_run_find(fs->run, name);
		if (s < 0) {  /* maybe saved since the last scan */
			ckpt_run_rescan(fs->run, 0);
			s = ckpt_run_find(fs->run, name);
		}
		if (s < 0)
			fuse_reply_err(req, ENOENT);
		else
			reply_entry(req, fs, STEP_INO(s), TIMEOUT);
		return;
	}
	if (p.kind == N_STEP && ckpt_run_split(fs->run, p.step)) {
		int v = !strcmp(name, view_dir[1]) ? 1 : !strcmp(name, view_dir[2]) ? 2 : 0;
		if (v)
			reply_entry(req, fs, INO(p.step, v, 1), TIMEOUT);
		else
			fuse_reply_err(req, ENOENT);
		return;
	}
	if (p.kind == N_ROOT) {
		g = fs->g;
	} else if (p.kind == N_STEP || p.kind == N_VIEW) {
		struct ckpt_err e = { 0 };
		step = p.step;
		g = p.sub ? ckpt_run_view_engine(fs->run, step, p.sub, &e)
			  : ckpt_run_engine(fs->run, step, &e);
		if (!g) {
			ckpt_print_line(stderr, "ckptfs: %s", e.msg);
			fuse_reply_err(req, EIO);
			return;
		}
	} else {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	if (!strcmp(name, STATS_NAME))  /* reachable by name, never listed */
		reply_entry(req, fs, fs->run ? INO(step, p.sub, STATS_X) : STATS_X, 0);
	else if ((i = ckpt_layout_find(&g->layout, name)) < 0)
		fuse_reply_err(req, ENOENT);
	else
		reply_entry(req, fs, fs->run ? INO(step, p.sub, i + 2) : (fuse_ino_t)i + 2, TIMEOUT);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct stat st;
	(void)fi;
	if (fill_attr(fs, ino, &st))
		fuse_reply_err(req, ENOENT);
	else
		fuse_reply_attr(req, &st, fs->run && (ino == ROOT_INO || ino == LATEST_INO) ?
					  RUN_TIMEOUT : TIMEOUT);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = fs_of(req);
	char buf[PATH_MAX];
	if (ino != LATEST_INO || !fs->run || !ckpt_run_latest(fs->run, buf, sizeof(buf)))
		fuse_reply_err(req, ENOENT);
	else
		fuse_reply_readlink(req, buf);
}

/* One directory entry; returns 0 when the buffer is full. */
static int add_entry(fuse_req_t req, char *buf, size_t size, size_t *used, const char *name,
		     fuse_ino_t ino, mode_t mode, off_t next)
{
	struct stat st = { 0 };
	st.st_ino = ino;
	st.st_mode = mode;
	size_t need = fuse_add_direntry(req, buf + *used, size - *used, name, &st, next);
	if (need > size - *used)
		return 0;
	*used += need;
	return 1;
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct node n = resolve(fs, ino);
	struct ckpt_engine *g = NULL;
	size_t used = 0;
	char *buf;
	(void)fi;

	if (n.kind != N_ROOT && n.kind != N_STEP && n.kind != N_VIEW) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	int split = n.kind == N_STEP && ckpt_run_split(fs->run, n.step);
	if ((n.kind != N_ROOT || !fs->run) && !split) {
		struct ckpt_err e = { 0 };
		g = !fs->run ? fs->g : n.sub ? ckpt_run_view_engine(fs->run, n.step, n.sub, &e)
					     : ckpt_run_engine(fs->run, n.step, &e);
		if (!g) {
			ckpt_print_line(stderr, "ckptfs: %s", e.msg);
			fuse_reply_err(req, EIO);
			return;
		}
	}
	if (!(buf = malloc(size))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (!g && !split && off == 0)
		ckpt_run_rescan(fs->run, RESCAN_MS);
	/* entries: ".", "..", then the files, the two views, or "latest" and the steps */
	size_t total = g ? g->layout.n + 2 : split ? 4 : ckpt_run_count(fs->run) + 3;
	for (size_t i = (size_t)off; i < total; i++) {
		int more = 1;
		if (i < 2) {
			more = add_entry(req, buf, size, &used, i ? ".." : ".", ino, S_IFDIR, (off_t)i + 1);
		} else if (split) {
			int v = i == 2 ? CKPT_VIEW_EMA : CKPT_VIEW_MODEL;
			more = add_entry(req, buf, size, &used, view_dir[v], INO(n.step, v, 1), S_IFDIR,
					 (off_t)i + 1);
		} else if (g) {
			fuse_ino_t fino = fs->run ? INO(n.step, n.sub, i) : (fuse_ino_t)i;
			more = add_entry(req, buf, size, &used, g->layout.f[i - 2].name, fino, S_IFREG,
					 (off_t)i + 1);
		} else if (i == 2) {
			char lb[PATH_MAX];
			if (ckpt_run_latest(fs->run, lb, sizeof(lb)))
				more = add_entry(req, buf, size, &used, "latest", LATEST_INO, S_IFLNK,
						 (off_t)i + 1);
		} else {
			int visible = 0;
			const char *name = ckpt_run_step(fs->run, i - 3, &visible, NULL);
			if (name && visible)
				more = add_entry(req, buf, size, &used, name, STEP_INO(i - 3), S_IFDIR,
						 (off_t)i + 1);
		}
		if (!more)
			break;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct node n = resolve(fs_of(req), ino);
	if (n.kind == N_ROOT || n.kind == N_STEP || n.kind == N_VIEW) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if (n.kind != N_FILE && n.kind != N_STATS) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (n.kind == N_STATS)
		fi->direct_io = 1;
	else
		fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct node n = resolve(fs_of(req), ino);
	struct ckpt_err e = { 0 };
	uint8_t *buf;
	size_t got;
	(void)fi;

	if (n.kind == N_STATS && off >= 0) {
		char text[4096];
		size_t len = ckpt_engine_stats(n.g, text, sizeof(text));
		if ((size_t)off >= len)
			fuse_reply_buf(req, NULL, 0);
		else
			fuse_reply_buf(req, text + off, len - (size_t)off < size ? len - (size_t)off : size);
		return;
	}
	if (n.kind != N_FILE || off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (!(buf = malloc(size ? size : 1))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (ckpt_engine_read(n.g, n.file, (uint64_t)off, size, buf, &got, &e)) {
		ckpt_print_line(stderr, "ckptfs: read of %s at %lld+%zu failed: %s",
				n.g->layout.f[n.file].name, (long long)off, size, e.msg);
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
	uint64_t total = 0, files = 1;
	(void)ino;

	if (fs->g) {
		for (size_t i = 0; i < fs->g->layout.n; i++)
			total += fs->g->layout.f[i].size;
		files += fs->g->layout.n;
	}
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = sv.f_frsize = 4096;
	sv.f_blocks = (total + 4095) / 4096;
	sv.f_files = files;
	sv.f_namemax = 255;
	fuse_reply_statfs(req, &sv);
}

static const struct fuse_lowlevel_ops ops = {
	.init = op_init,
	.lookup = op_lookup,
	.getattr = op_getattr,
	.readlink = op_readlink,
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

int ckpt_fs_serve(struct ckpt_engine *g, struct ckpt_run *run, struct fuse_args *args,
		  const char *mountpoint, int foreground, int single_thread, int clone_fd,
		  unsigned max_threads)
{
	struct fs fs = { .g = g, .run = run, .mountpoint = mountpoint,
			 .mtime = g ? (time_t)g->cat.mtime : time(NULL), .uid = getuid(),
			 .gid = getgid() };
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

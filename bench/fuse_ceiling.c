/* fuse_ceiling.c - the FUSE transport ceiling for the benchmark: a
 * read-only low-level filesystem with one file of SIZE bytes served from a
 * buffer in memory, with the same settings as ckptfs (keep_cache, long
 * timeouts, multithreaded loop, 1 MiB readahead when root).  No FUSE
 * filesystem can read faster on this machine.
 *
 * usage: fuse_ceiling MOUNTPOINT SIZE_MIB [-f] */
#define FUSE_USE_VERSION 312
#include <errno.h>
#include <fuse_lowlevel.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *data;
static size_t size;

static void fill(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = ino == 1 ? S_IFDIR | 0555 : S_IFREG | 0444;
	st->st_nlink = ino == 1 ? 2 : 1;
	st->st_size = ino == 1 ? 0 : (off_t)size;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param ep = { .ino = 2, .attr_timeout = 86400, .entry_timeout = 86400 };
	if (parent != 1 || strcmp(name, "data"))
		return (void)fuse_reply_err(req, ENOENT);
	fill(2, &ep.attr);
	fuse_reply_entry(req, &ep);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	(void)fi;
	fill(ino, &st);
	fuse_reply_attr(req, &st, 86400);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t n, off_t off, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	if ((size_t)off >= size)
		return (void)fuse_reply_buf(req, NULL, 0);
	if (n > size - (size_t)off)
		n = size - (size_t)off;
	/* copy like a real filesystem does into its reply buffer */
	char *buf = malloc(n ? n : 1);
	memcpy(buf, data + off, n);
	fuse_reply_buf(req, buf, n);
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t n, off_t off, struct fuse_file_info *fi)
{
	char buf[512];
	size_t used = 0;
	struct stat st;
	(void)fi;
	if (ino != 1)
		return (void)fuse_reply_err(req, ENOTDIR);
	if (off == 0) {
		fill(2, &st);
		used = fuse_add_direntry(req, buf, sizeof(buf) < n ? sizeof(buf) : n, "data", &st, 1);
	}
	fuse_reply_buf(req, buf, used);
}

static void op_init(void *ud, struct fuse_conn_info *conn)
{
	(void)ud;
	conn->max_background = 64;
	conn->congestion_threshold = 48;
}

static const struct fuse_lowlevel_ops ops = {
	.init = op_init, .lookup = op_lookup, .getattr = op_getattr, .open = op_open,
	.read = op_read, .readdir = op_readdir,
};

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s MOUNTPOINT SIZE_MIB [-f]\n", argv[0]);
		return 2;
	}
	size = (size_t)strtoull(argv[2], NULL, 10) << 20;
	data = calloc(1, size);  /* zero pages: no fill time inside the timed mount */
	char *fargv[] = { argv[0], "-oro,fsname=fuse_ceiling", argc > 3 ? argv[3] : NULL, NULL };
	struct fuse_args args = FUSE_ARGS_INIT(argc > 3 ? 3 : 2, fargv);
	struct fuse_session *se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
	if (!se || fuse_set_signal_handlers(se) || fuse_session_mount(se, argv[1]))
		return 1;
	fuse_daemonize(argc > 3);
	struct fuse_loop_config *cfg = fuse_loop_cfg_create();
	fuse_loop_cfg_set_max_threads(cfg, 10);
	int rc = fuse_session_loop_mt(se, cfg);
	fuse_loop_cfg_destroy(cfg);
	fuse_session_unmount(se);
	fuse_remove_signal_handlers(se);
	fuse_session_destroy(se);
	free(data);
	return rc ? 1 : 0;
}

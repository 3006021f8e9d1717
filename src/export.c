/* export.c - writes the view to a directory through the read path. */
#include "config.h"
#include "frontends.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BLOCK (8u << 20)

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void progress(uint64_t done, uint64_t total, double t0, const char *name)
{
	int width = 30, fill = total ? (int)((double)done / (double)total * width) : width;
	double dt = now() - t0, rate = dt > 0 ? (double)done / dt / 1e6 : 0;
	fprintf(stderr, "\r[%.*s%*s] %3d%%  %.1f/%.1f MB  %.0f MB/s  %-40.40s", fill,
		"##############################", width - fill, "",
		total ? (int)(done * 100 / total) : 100, (double)done / 1e6, (double)total / 1e6,
		rate, name);
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* mkdir -p */
static int make_dirs(const char *path)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* Whether out (which may not exist yet) is or would be inside dir: the
 * deepest existing ancestor of out is resolved; the parts still to be
 * created must not contain "..". */
static int would_be_inside(const char *out, const char *realdir)
{
	char buf[PATH_MAX], *res;
	size_t n = strlen(out), dl = strlen(realdir);
	int inside;

	if (n == 0 || n >= sizeof(buf))
		return 1;
	memcpy(buf, out, n + 1);
	for (;;) {
		if ((res = realpath(buf, NULL)))
			break;
		char *slash = strrchr(buf, '/');
		if (!slash || strcmp(slash + 1, "..") == 0)
			return strstr(out, "..") != NULL;  /* refuse odd relative forms */
		if (slash == buf) {
			buf[1] = '\0';
		} else {
			*slash = '\0';
		}
		if (strcmp(buf, out) == 0)
			return 1;
	}
	if (strstr(out + strlen(buf), "/../") || (n >= 3 && strcmp(out + n - 3, "/..") == 0 &&
						  strlen(buf) < n - 3)) {
		free(res);
		return 1;
	}
	inside = strncmp(res, realdir, dl) == 0 && (res[dl] == '\0' || res[dl] == '/');
	free(res);
	return inside;
}

static int prepare_dir(const struct ckpt_engine *g, const char *out, struct ckpt_err *e)
{
	struct stat sb;
	int rc;

	if (would_be_inside(out, g->cat.realdir))
		return ckpt_err_set(e, -EINVAL, "%s: the output directory is inside the checkpoint "
				    "%s; ckptfs never writes into its source", out, g->cat.dir);
	if ((rc = make_dirs(out)))
		return ckpt_err_set(e, rc, "%s: cannot create: %s", out, strerror(-rc));
	if (stat(out, &sb) < 0 || !S_ISDIR(sb.st_mode))
		return ckpt_err_set(e, -ENOTDIR, "%s: not a directory", out);
	return 0;
}

int ckpt_export(struct ckpt_engine *g, const char *out, int show, struct ckpt_err *e)
{
	uint64_t total = 0, done = 0;
	int tty = show && isatty(2), rc;
	double t0 = now(), last = 0;
	char path[PATH_MAX];
	uint8_t *buf;

	if ((rc = prepare_dir(g, out, e)))
		return rc;
	for (size_t i = 0; i < g->layout.n; i++)
		total += g->layout.f[i].size;
	if (!(buf = malloc(BLOCK)))
		return ckpt_err_set(e, -ENOMEM, "out of memory");
	for (size_t i = 0; i < g->layout.n && !rc; i++) {
		const struct ckpt_vfile *f = &g->layout.f[i];
		snprintf(path, sizeof(path), "%s/%s", out, f->name);
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0) {
			rc = ckpt_err_set(e, -errno, "%s: cannot create: %s", path, strerror(errno));
			break;
		}
		for (uint64_t off = 0; off < f->size && !rc;) {
			size_t got;
			if ((rc = ckpt_engine_read(g, i, off, BLOCK, buf, &got, e)))
				break;
			if (got == 0) {
				rc = ckpt_err_set(e, -EIO, "%s: short read at %llu", f->name,
						  (unsigned long long)off);
				break;
			}
			if ((rc = write_all(fd, buf, got))) {
				ckpt_err_set(e, rc, "%s: write failed: %s", path, strerror(-rc));
				break;
			}
			off += got;
			done += got;
			if (tty && now() - last > 0.2) {
				progress(done, total, t0, f->name);
				last = now();
			}
		}
		if (close(fd) < 0 && !rc)
			rc = ckpt_err_set(e, -errno, "%s: close failed: %s", path, strerror(errno));
	}
	if (tty) {
		progress(done, total, t0, rc ? "failed" : "done");
		fputc('\n', stderr);
	}
	free(buf);
	return rc;
}

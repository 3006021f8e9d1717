/* export.c - writes the view to a directory through the read path, with
 * one worker thread per CPU (at most 8). */
#include "config.h"
#include "frontends.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dirlist.h"

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
	if ((rc = ckpt_mkdir_p(out, 0755)))
		return ckpt_err_set(e, rc, "%s: cannot create: %s", out, strerror(-rc));
	if (stat(out, &sb) < 0 || !S_ISDIR(sb.st_mode))
		return ckpt_err_set(e, -ENOTDIR, "%s: not a directory", out);
	return 0;
}

/* Blocks are handed out to worker threads in file order; each reads its
 * block through the engine and writes it with pwrite at the same offset. */
struct job {
	struct ckpt_engine *g;
	int *fds;
	char **paths;
	pthread_mutex_t lock;
	size_t file;          /* next block: file index and offset */
	uint64_t off;
	uint64_t done;
	int rc;
	struct ckpt_err err;
};

static int next_block(struct job *j, size_t *file, uint64_t *off, size_t *len)
{
	int more = 0;
	pthread_mutex_lock(&j->lock);
	while (!j->rc && j->file < j->g->layout.n && j->off >= j->g->layout.f[j->file].size) {
		j->file++;
		j->off = 0;
	}
	if (!j->rc && j->file < j->g->layout.n) {
		uint64_t size = j->g->layout.f[j->file].size;
		*file = j->file;
		*off = j->off;
		*len = size - j->off < BLOCK ? (size_t)(size - j->off) : BLOCK;
		j->off += *len;
		more = 1;
	}
	pthread_mutex_unlock(&j->lock);
	return more;
}

static void *worker(void *arg)
{
	struct job *j = arg;
	struct ckpt_err e = { 0 };
	uint8_t *buf = malloc(BLOCK);
	size_t file, len, got;
	uint64_t off;
	int rc = buf ? 0 : ckpt_err_set(&e, -ENOMEM, "out of memory");

	while (!rc && next_block(j, &file, &off, &len)) {
		if ((rc = ckpt_engine_read(j->g, file, off, len, buf, &got, &e)))
			break;
		if (got != len) {
			rc = ckpt_err_set(&e, -EIO, "%s: short read at %llu", j->g->layout.f[file].name,
					  (unsigned long long)off);
			break;
		}
		for (size_t w = 0; w < got && !rc;) {
			ssize_t n = pwrite(j->fds[file], buf + w, got - w, (off_t)(off + w));
			if (n < 0 && errno != EINTR)
				rc = ckpt_err_set(&e, -errno, "%s: write failed: %s", j->paths[file],
						  strerror(errno));
			else if (n > 0)
				w += (size_t)n;
		}
		pthread_mutex_lock(&j->lock);
		j->done += got;
		pthread_mutex_unlock(&j->lock);
	}
	pthread_mutex_lock(&j->lock);
	if (rc && !j->rc) {
		j->rc = rc;
		j->err = e;
	}
	pthread_mutex_unlock(&j->lock);
	free(buf);
	return NULL;
}

int ckpt_export(struct ckpt_engine *g, const char *out, int show, struct ckpt_err *e)
{
	struct job j = { .g = g };
	uint64_t total = 0;
	int tty = show && isatty(2), rc;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int nthreads = ncpu < 1 ? 1 : ncpu > 8 ? 8 : (int)ncpu;
	pthread_t tids[8];
	double t0 = now();

	if ((rc = prepare_dir(g, out, e)))
		return rc;
	j.fds = calloc(g->layout.n + 1, sizeof(*j.fds));
	j.paths = calloc(g->layout.n + 1, sizeof(*j.paths));
	if (!j.fds || !j.paths) {
		free(j.fds);
		free(j.paths);
		return ckpt_err_set(e, -ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < g->layout.n; i++)
		j.fds[i] = -1;
	for (size_t i = 0; i < g->layout.n && !rc; i++) {
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/%s", out, g->layout.f[i].name);
		total += g->layout.f[i].size;
		if (!(j.paths[i] = strdup(path)))
			rc = ckpt_err_set(e, -ENOMEM, "out of memory");
		else if ((j.fds[i] = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) < 0)
			rc = ckpt_err_set(e, -errno, "%s: cannot create: %s", path, strerror(errno));
	}
	if (!rc) {
		pthread_mutex_init(&j.lock, NULL);
		int started = 0;
		for (; started < nthreads; started++)
			if (pthread_create(&tids[started], NULL, worker, &j))
				break;
		if (started == 0)
			worker(&j);
		while (tty) {  /* progress while the workers run */
			pthread_mutex_lock(&j.lock);
			uint64_t d = j.done;
			int stop = j.rc || d >= total;
			pthread_mutex_unlock(&j.lock);
			progress(d, total, t0, stop ? (j.rc ? "failed" : "done") : "");
			if (stop)
				break;
			usleep(200000);
		}
		for (int t = 0; t < started; t++)
			pthread_join(tids[t], NULL);
		if (tty)
			fputc('\n', stderr);
		pthread_mutex_destroy(&j.lock);
		if ((rc = j.rc))
			*e = j.err;
	}
	for (size_t i = 0; i < g->layout.n; i++) {
		if (j.fds[i] >= 0 && close(j.fds[i]) < 0 && !rc)
			rc = ckpt_err_set(e, -errno, "%s: close failed: %s", j.paths[i], strerror(errno));
		free(j.paths[i]);
	}
	free(j.fds);
	free(j.paths);
	return rc;
}

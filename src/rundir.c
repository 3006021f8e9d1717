/* rundir.c - see rundir.h. */
#include "config.h"
#include "rundir.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "catalog.h"
#include "dirlist.h"

struct step {
	char *name;         /* subdirectory of the root */
	char *ckpt;         /* the checkpoint directory inside it, or NULL */
	char *why;          /* why it is hidden, when ckpt is NULL */
	int64_t number;     /* iteration number from the name, -1 if none */
	struct ckpt_engine *g;
	int failed;
	struct ckpt_engine *alt;  /* the other view of a split step */
	int alt_failed;
};

struct ckpt_run {
	char *root;
	struct ckpt_opts opts;
	pthread_mutex_t lock;
	struct step *s;
	size_t n;
	struct timespec scanned;
};

static const char *const inner[] = { ".", "model/ckpt", "model", "ckpt", "checkpoint" };

/* Where the checkpoint of a step lives, or NULL with the reason. */
static char *locate(const char *root, const char *name, char **why)
{
	char p[PATH_MAX], t[PATH_MAX + 16];

	*why = NULL;
	int files;
	snprintf(p, sizeof(p), "%s/%s", root, name);
	if (ckpt_engine_pair(p, &files))  /* BAGEL ema/ + model/: the step itself */
		return realpath(p, NULL);
	for (size_t i = 0; i < sizeof(inner) / sizeof(inner[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s/%s", root, name, inner[i]);
		if (ckpt_catalog_present(p))
			return realpath(p, NULL);
		snprintf(t, sizeof(t), "%s/.metadata.tmp", p);
		if (access(t, F_OK) == 0 && !*why)
			*why = strdup("incomplete save: .metadata.tmp but no .metadata");
	}
	if (!*why)
		*why = strdup("no checkpoint inside");
	return NULL;
}

static int64_t number_of(const char *name)
{
	const char *p = name + strlen(name);
	while (p > name && (p[-1] < '0' || p[-1] > '9'))
		p--;
	const char *end = p;
	while (p > name && p[-1] >= '0' && p[-1] <= '9')
		p--;
	return p == end ? -1 : strtoll(p, NULL, 10);
}

static int is_subdir(const char *root, const char *name)
{
	char p[PATH_MAX];
	struct stat sb;
	if (name[0] == '.')
		return 0;
	snprintf(p, sizeof(p), "%s/%s", root, name);
	return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

int ckpt_run_detect(const char *dir)
{
	char **names, *why;
	size_t n;
	int found = 0, files;

	if (ckpt_catalog_present(dir) || ckpt_engine_pair(dir, &files) ||
	    ckpt_dir_list(dir, NULL, &names, &n))
		return 0;
	for (size_t i = 0; i < n && !found; i++) {
		if (!is_subdir(dir, names[i]))
			continue;
		char *c = locate(dir, names[i], &why);
		found = c != NULL || (why && strncmp(why, "incomplete", 10) == 0);
		free(c);
		free(why);
	}
	ckpt_names_free(names, n);
	return found;
}

/* Adds steps not seen before; existing ones that became complete are
 * updated.  Locked. */
static int has_manifest(const char *root, const char *name)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/%s/checkpoint_manifest.json", root, name);
	return access(p, F_OK) == 0;
}

static void scan(struct ckpt_run *r)
{
	char **names;
	size_t n;
	int manifests = 0;

	clock_gettime(CLOCK_MONOTONIC, &r->scanned);
	if (ckpt_dir_list(r->root, NULL, &names, &n))
		return;
	/* a run whose steps carry VeOmni's completion marker: a step without one
	 * is still being written */
	for (size_t i = 0; i < n && !manifests; i++)
		manifests = is_subdir(r->root, names[i]) && has_manifest(r->root, names[i]);
	for (size_t i = 0; i < n; i++) {
		if (!is_subdir(r->root, names[i]))
			continue;
		size_t k;
		for (k = 0; k < r->n && strcmp(r->s[k].name, names[i]); k++)
			;
		if (k < r->n && r->s[k].ckpt)
			continue;  /* known and complete: never changes */
		char *why = NULL, *c = locate(r->root, names[i], &why);
		if (c && manifests && !has_manifest(r->root, names[i])) {
			free(c);
			c = NULL;
			why = strdup("incomplete save: no checkpoint_manifest.json yet");
		}
		if (k == r->n) {
			if (!c && (!why || strcmp(why, "no checkpoint inside") == 0)) {
				free(why);  /* unrelated directories (logs, tensorboard) */
				continue;
			}
			struct step *ns = realloc(r->s, (r->n + 1) * sizeof(*ns));
			if (!ns) {
				free(c);
				free(why);
				break;
			}
			r->s = ns;
			memset(&ns[k], 0, sizeof(ns[k]));
			ns[k].name = strdup(names[i]);
			ns[k].number = number_of(names[i]);
			r->n++;
		}
		free(r->s[k].why);
		r->s[k].ckpt = c;
		r->s[k].why = c ? (free(why), NULL) : why;
	}
	ckpt_names_free(names, n);
}

int ckpt_run_open(struct ckpt_run **out, const char *dir, const struct ckpt_opts *o,
		  struct ckpt_err *e)
{
	struct ckpt_run *r = calloc(1, sizeof(*r));
	if (!r || !(r->root = realpath(dir, NULL))) {
		int rc = r ? -errno : -ENOMEM;
		free(r);
		return ckpt_err_set(e, rc, "%s: %s", dir, strerror(-rc));
	}
	r->opts = *o;
	pthread_mutex_init(&r->lock, NULL);
	scan(r);
	*out = r;
	return 0;
}

void ckpt_run_close(struct ckpt_run *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++) {
		if (r->s[i].g) {
			ckpt_engine_close(r->s[i].g);
			free(r->s[i].g);
		}
		if (r->s[i].alt) {
			ckpt_engine_close(r->s[i].alt);
			free(r->s[i].alt);
		}
		free(r->s[i].name);
		free(r->s[i].ckpt);
		free(r->s[i].why);
	}
	free(r->s);
	free(r->root);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

void ckpt_run_rescan(struct ckpt_run *r, unsigned max_age_ms)
{
	struct timespec now;
	pthread_mutex_lock(&r->lock);
	clock_gettime(CLOCK_MONOTONIC, &now);
	int64_t age = (now.tv_sec - r->scanned.tv_sec) * 1000 +
		      (now.tv_nsec - r->scanned.tv_nsec) / 1000000;
	if (age >= (int64_t)max_age_ms)
		scan(r);
	pthread_mutex_unlock(&r->lock);
}

size_t ckpt_run_count(struct ckpt_run *r)
{
	pthread_mutex_lock(&r->lock);
	size_t n = r->n;
	pthread_mutex_unlock(&r->lock);
	return n;
}

const char *ckpt_run_step(struct ckpt_run *r, size_t i, int *visible, const char **why)
{
	const char *name = NULL;
	pthread_mutex_lock(&r->lock);
	if (i < r->n) {
		name = r->s[i].name;
		*visible = r->s[i].ckpt != NULL;
		if (why)
			*why = r->s[i].why;
	}
	pthread_mutex_unlock(&r->lock);
	return name;
}

long ckpt_run_find(struct ckpt_run *r, const char *name)
{
	long found = -1;
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->n && found < 0; i++)
		if (r->s[i].ckpt && !strcmp(r->s[i].name, name))
			found = (long)i;
	pthread_mutex_unlock(&r->lock);
	return found;
}

/* Opens the engine of step i with options o into *slot once; locked. */
static struct ckpt_engine *open_locked(struct ckpt_run *r, size_t i, struct ckpt_engine **slot,
				       int *failed, const struct ckpt_opts *o, struct ckpt_err *e)
{
	struct ckpt_engine *g = NULL;

	if (i >= r->n || !r->s[i].ckpt) {
		ckpt_err_set(e, -ENOENT, "no step %zu", i);
	} else if (*slot) {
		g = *slot;
	} else if (*failed) {
		ckpt_err_set(e, -EIO, "%s/%s: could not be opened (see the first error)", r->root,
			     r->s[i].name);
	} else if (!(g = calloc(1, sizeof(*g)))) {
		ckpt_err_set(e, -ENOMEM, "out of memory");
	} else if (ckpt_engine_open(g, r->s[i].ckpt, o, e)) {
		free(g);
		g = NULL;
		*failed = 1;
	} else {
		*slot = g;
	}
	return g;
}

struct ckpt_engine *ckpt_run_engine(struct ckpt_run *r, size_t i, struct ckpt_err *e)
{
	pthread_mutex_lock(&r->lock);
	struct ckpt_engine *g = i < r->n ? open_locked(r, i, &r->s[i].g, &r->s[i].failed, &r->opts, e)
				       : NULL;
	if (i >= r->n)
		ckpt_err_set(e, -ENOENT, "no step %zu", i);
	pthread_mutex_unlock(&r->lock);
	return g;
}

int ckpt_run_split(struct ckpt_run *r, size_t i)
{
	struct ckpt_err e = { 0 };
	struct ckpt_engine *g;

	if (r->opts.view_ema || r->opts.view_model)
		return 0;
	g = ckpt_run_engine(r, i, &e);
	return g && g->views == (CKPT_VIEW_MODEL | CKPT_VIEW_EMA);
}

struct ckpt_engine *ckpt_run_view_engine(struct ckpt_run *r, size_t i, int view,
					 struct ckpt_err *e)
{
	struct ckpt_engine *g;

	if (!ckpt_run_split(r, i)) {
		ckpt_err_set(e, -ENOENT, "step %zu shows no model/ and ema/ views", i);
		return NULL;
	}
	pthread_mutex_lock(&r->lock);
	g = r->s[i].g;
	if (g->served_view != view) {
		struct ckpt_opts o = r->opts;
		o.view_ema = view == CKPT_VIEW_EMA;
		o.view_model = view == CKPT_VIEW_MODEL;
		g = open_locked(r, i, &r->s[i].alt, &r->s[i].alt_failed, &o, e);
	}
	pthread_mutex_unlock(&r->lock);
	return g;
}

const char *ckpt_run_latest(struct ckpt_run *r, char *buf, size_t n)
{
	char p[PATH_MAX];
	int64_t want = -1, best = -1;
	const char *name = NULL;
	FILE *f;

	/* Megatron names the newest complete iteration */
	snprintf(p, sizeof(p), "%s/latest_checkpointed_iteration.txt", r->root);
	int fd = open(p, O_RDONLY | O_NONBLOCK | O_CLOEXEC);  /* a FIFO must not block */
	struct stat sb;
	if (fd >= 0 && (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode))) {
		close(fd);
		fd = -1;
	}
	f = fd >= 0 ? fdopen(fd, "r") : NULL;
	if (!f && fd >= 0)
		close(fd);
	if (f) {
		long long it;
		if (fscanf(f, "%lld", &it) == 1)
			want = it;
		fclose(f);
	}
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->n; i++) {
		if (!r->s[i].ckpt)
			continue;
		if (want >= 0 && r->s[i].number == want) {
			name = r->s[i].name;
			break;
		}
		if (r->s[i].number > best || (!name && r->s[i].number == best)) {
			best = r->s[i].number;
			name = r->s[i].name;
		}
	}
	if (name)
		snprintf(buf, n, "%s", name);
	pthread_mutex_unlock(&r->lock);
	return name ? buf : NULL;
}

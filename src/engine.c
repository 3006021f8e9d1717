/* engine.c - see engine.h. */
#include "config.h"
#include "engine.h"
#include "assets.h"
#include "serve.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_CACHE_BYTES (1024ull << 20)

static int is_file(const char *dir, const char *name)
{
	char p[PATH_MAX];
	struct stat sb;
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

int ckpt_engine_pair(const char *dir, int *files)
{
	char p[PATH_MAX], q[PATH_MAX];
	int have = 0;

	*files = 0;
	snprintf(p, sizeof(p), "%s/.metadata", dir);
	if (access(p, F_OK) == 0)
		return 0;  /* a DCP checkpoint: EMA copies are ema.state.* entries */
	if (is_file(dir, "ema.safetensors")) {
		*files = 1;
		return CKPT_VIEW_EMA | (is_file(dir, "model.safetensors") ? CKPT_VIEW_MODEL : 0);
	}
	if (ckpt_catalog_present(dir))
		return 0;
	snprintf(p, sizeof(p), "%s/ema", dir);
	snprintf(q, sizeof(q), "%s/model", dir);
	if (ckpt_catalog_present(p))
		have = CKPT_VIEW_EMA | (ckpt_catalog_present(q) ? CKPT_VIEW_MODEL : 0);
	return have;
}

/* Whether the catalogue holds TorchTitan EMA copies (ema.state.*). */
static int has_ema_entries(const struct ckpt_catalog *c)
{
	for (size_t i = 0; i < c->ntensors; i++)
		if (!strncmp(c->tensors[i].name, "ema.state.", 10))
			return 1;
	return 0;
}

int ckpt_engine_open(struct ckpt_engine *g, const char *src, const struct ckpt_opts *o,
		     struct ckpt_err *e)
{
	int rc;

	memset(g, 0, sizeof(*g));
	g->opts = *o;
	int files, pair = ckpt_engine_pair(src, &files);
	if (pair) {
		int want = o->view_ema ? CKPT_VIEW_EMA : o->view_model ? CKPT_VIEW_MODEL
			   : (pair & CKPT_VIEW_EMA) ? CKPT_VIEW_EMA : CKPT_VIEW_MODEL;
		const char *half = want == CKPT_VIEW_EMA ? "ema" : "model";
		if (!(pair & want))
			return ckpt_err_set(e, -ENOENT, "%s: -o view=%s, but there is no %s%s here", src,
					    half, half, files ? ".safetensors" : "/ checkpoint");
		if (files) {
			g->opts.source_file = want == CKPT_VIEW_EMA ? "ema.safetensors" : "model.safetensors";
		} else {
			size_t n = strlen(src) + 8;
			if (!(g->source = malloc(n)))
				return ckpt_err_set(e, -ENOMEM, "out of memory");
			snprintf(g->source, n, "%s/%s", src, half);
			src = g->source;
		}
		g->opts.source_view = want;
		g->views = pair;
		g->served_view = want;
	}
	if ((rc = ckpt_catalog_open(&g->cat, src, &g->opts, e)))
		goto fail_src;
	if (!pair) {
		g->served_view = o->view_ema ? CKPT_VIEW_EMA : CKPT_VIEW_MODEL;
		g->views = CKPT_VIEW_MODEL | (has_ema_entries(&g->cat) ? CKPT_VIEW_EMA : 0);
	}
	if (!g->opts.assets) {
		g->assets_found = ckpt_assets_find(g->cat.realdir, &g->assets_origin);
		g->opts.assets = g->assets_found;
		g->opts.assets_found = g->assets_found != NULL;
	} else if (!(g->assets_origin = strdup("-o assets"))) {
		rc = ckpt_err_set(e, -ENOMEM, "out of memory");
		goto fail_cat;
	}
	o = &g->opts;
	if ((rc = ckpt_view_build(&g->view, &g->cat, o, e)))
		goto fail_cat;
	if ((rc = ckpt_layout_build(&g->layout, &g->view, o, e)))
		goto fail_view;
	rc = ckpt_chunkio_new(&g->io, &g->cat, o->cache_bytes ? o->cache_bytes : DEFAULT_CACHE_BYTES);
	if (rc) {
		ckpt_err_set(e, rc, "out of memory");
		goto fail_layout;
	}
	return 0;
fail_layout:
	ckpt_layout_free(&g->layout);
fail_view:
	ckpt_view_free(&g->view);
fail_cat:
	ckpt_catalog_close(&g->cat);
	free(g->assets_found);
	free(g->assets_origin);
	g->assets_found = g->assets_origin = NULL;
fail_src:
	free(g->source);
	g->source = NULL;
	return rc;
}

void ckpt_engine_close(struct ckpt_engine *g)
{
	ckpt_chunkio_free(g->io);
	ckpt_layout_free(&g->layout);
	ckpt_view_free(&g->view);
	ckpt_catalog_close(&g->cat);
	free(g->assets_found);
	free(g->assets_origin);
	free(g->source);
	memset(g, 0, sizeof(*g));
}

/* First extent whose bytes reach past off (extents tile the data section). */
static size_t find_extent(const struct ckpt_vfile *f, uint64_t off)
{
	size_t lo = 0, hi = f->next;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (f->ext[mid].start + f->ext[mid].t->nbytes <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

size_t ckpt_engine_stats(struct ckpt_engine *g, char *buf, size_t n)
{
	struct ckpt_io_stats *s = ckpt_chunkio_stats(g->io);
	int w = snprintf(buf, n,
			 "reads %llu\nbytes_served %llu\nread_errors %llu\nbytes_read_from_source %llu\n"
			 "bytes_converted %llu\nitem_cache_loads %llu\nitem_cache_hits %llu\n",
			 (unsigned long long)__atomic_load_n(&g->reads, __ATOMIC_RELAXED),
			 (unsigned long long)__atomic_load_n(&g->bytes_served, __ATOMIC_RELAXED),
			 (unsigned long long)__atomic_load_n(&g->read_errors, __ATOMIC_RELAXED),
			 (unsigned long long)__atomic_load_n(&s->bytes_read, __ATOMIC_RELAXED),
			 (unsigned long long)__atomic_load_n(&s->bytes_converted, __ATOMIC_RELAXED),
			 (unsigned long long)__atomic_load_n(&s->item_loads, __ATOMIC_RELAXED),
			 (unsigned long long)__atomic_load_n(&s->item_hits, __ATOMIC_RELAXED));
	return w < 0 ? 0 : (size_t)w < n ? (size_t)w : n - 1;
}

static int engine_read(struct ckpt_engine *g, size_t idx, uint64_t off, size_t len,
		       uint8_t *dst, size_t *got, struct ckpt_err *e);

int ckpt_engine_read(struct ckpt_engine *g, size_t idx, uint64_t off, size_t len,
		     uint8_t *dst, size_t *got, struct ckpt_err *e)
{
	int rc = engine_read(g, idx, off, len, dst, got, e);
	__atomic_fetch_add(&g->reads, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(rc ? &g->read_errors : &g->bytes_served, rc ? 1 : *got, __ATOMIC_RELAXED);
	return rc;
}

static int engine_read(struct ckpt_engine *g, size_t idx, uint64_t off, size_t len,
		       uint8_t *dst, size_t *got, struct ckpt_err *e)
{
	const struct ckpt_vfile *f;
	int rc;

	*got = 0;
	if (idx >= g->layout.n)
		return ckpt_err_set(e, -ENOENT, "no file %zu", idx);
	f = &g->layout.f[idx];
	if (off >= f->size)
		return 0;
	if (len > f->size - off)
		len = (size_t)(f->size - off);
	if (f->kind == CKPT_VF_ASSET && !f->head) {
		rc = ckpt_pread_full(f->fd, dst, len, off);
		if (rc)
			return ckpt_err_set(e, rc, "asset %s: read failed: %s", f->name, strerror(-rc));
		*got = len;
		return 0;
	}
	size_t done = 0;
	if (off < f->head_len) {
		size_t n = (size_t)(f->head_len - off) < len ? (size_t)(f->head_len - off) : len;
		memcpy(dst, f->head + off, n);
		done = n;
	}
	for (size_t i = find_extent(f, off + done); done < len && i < f->next; i++) {
		const struct ckpt_extent *x = &f->ext[i];
		uint64_t pos = off + done, toff = pos - x->start;
		uint64_t n = x->t->nbytes - toff;
		if (n > len - done)
			n = len - done;
		if ((rc = ckpt_serve(g->io, x->t, toff, n, dst + done, e)))
			return rc;
		done += (size_t)n;
	}
	*got = done;
	return 0;
}

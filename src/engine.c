/* engine.c - see engine.h. */
#include "config.h"
#include "engine.h"
#include "serve.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_CACHE_BYTES (1024ull << 20)

/* Finds config.json and tokenizer files next to the weights when -o assets
 * is not given: veRL's huggingface/, AutoModel's .hf_metadata/, VeOmni's
 * model_assets/, or a config.json in the checkpoint directory, its parent
 * (the step) or grandparent (the run root). */
static char *find_assets(const char *dir)
{
	static const char *const cands[] = {
		"huggingface", ".hf_metadata", "model_assets", ".",
		"../huggingface", "../.hf_metadata", "../model_assets", "..", "../..",
	};
	char path[PATH_MAX];

	for (size_t i = 0; i < sizeof(cands) / sizeof(cands[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s/config.json", dir, cands[i]);
		if (access(path, R_OK) == 0) {
			snprintf(path, sizeof(path), "%s/%s", dir, cands[i]);
			return realpath(path, NULL);
		}
	}
	return NULL;
}

int ckpt_engine_open(struct ckpt_engine *g, const char *src, const struct ckpt_opts *o,
		     struct ckpt_err *e)
{
	int rc;

	memset(g, 0, sizeof(*g));
	g->opts = *o;
	if ((rc = ckpt_catalog_open(&g->cat, src, o, e)))
		return rc;
	if (!g->opts.assets) {
		g->assets_found = find_assets(g->cat.realdir);
		g->opts.assets = g->assets_found;
		g->opts.assets_found = g->assets_found != NULL;
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
	g->assets_found = NULL;
	return rc;
}

void ckpt_engine_close(struct ckpt_engine *g)
{
	ckpt_chunkio_free(g->io);
	ckpt_layout_free(&g->layout);
	ckpt_view_free(&g->view);
	ckpt_catalog_close(&g->cat);
	free(g->assets_found);
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
			return ckpt_err_set(e, rc, "asset %s: read failed: %s", f->name, ckpt_read_strerror(rc));
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

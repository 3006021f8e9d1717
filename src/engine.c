/* engine.c - see engine.h. */
#include "config.h"
#include "engine.h"
#include "assets.h"
#include "blocks.h"
#include "cachekey.h"
#include "convert.h"
#include "dcache.h"
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

/* Does making t's bytes cost more than a read? */
static int tensor_costly(const struct ckpt_vtensor *t)
{
	for (size_t i = 0; i < t->nseg; i++) {
		const struct ckpt_segment *sg = &t->seg[i];
		if (sg->src->dtype != t->dtype || sg->transpose)
			return 1;
		for (size_t k = 0; k < sg->src->nchunks; k++) {
			const struct ckpt_chunk *ch = &sg->src->chunks[k];
			if (ch->zstd || (ch->decoded && (!ch->item.contiguous || ch->item.big_endian)))
				return 1;
		}
	}
	return 0;
}

/* Marks, per weights file, the blocks holding bytes of a costly tensor. */
static int plan_blocks(struct ckpt_engine *g)
{
	const struct ckpt_layout *l = &g->layout;
	if (!(g->costly = calloc(l->n ? l->n : 1, sizeof(*g->costly))))
		return -ENOMEM;
	for (size_t i = 0; i < l->n; i++) {
		const struct ckpt_vfile *f = &l->f[i];
		for (size_t k = 0; k < f->next; k++) {
			const struct ckpt_extent *x = &f->ext[k];
			if (!x->t->nbytes || !tensor_costly(x->t))
				continue;
			if (!g->costly[i] && !(g->costly[i] = calloc(f->size / CKPT_BLOCK / 8 + 1, 1)))
				return -ENOMEM;
			for (uint64_t b = x->start / CKPT_BLOCK; b <= (x->start + x->t->nbytes - 1) / CKPT_BLOCK;
			     b++)
				g->costly[i][b / 8] |= (uint8_t)(1u << (b % 8));
		}
	}
	return 0;
}

static void free_blocks(struct ckpt_engine *g)
{
	if (g->opts.blocks)
		ckpt_blocks_forget(g->opts.blocks, g);
	for (size_t i = 0; g->costly && i < g->layout.n; i++)
		free(g->costly[i]);
	free(g->costly);
	g->costly = NULL;
}

/* Names the engine's blocks in the on-disk cache. */
static int attach_cache(struct ckpt_engine *g, struct ckpt_err *e)
{
	int rc;
	g->dkey = -1;
	if (!g->opts.dcache)
		return 0;
	if ((rc = ckpt_cache_key(&g->cat, &g->layout, g->key, e)))
		return rc;
	if ((g->dkey = ckpt_dcache_attach(g->opts.dcache, g->key, g->cat.realdir)) < 0) {
		ckpt_warn("%s: cannot use cache directory %s: %s; going on without it", g->cat.dir,
			  ckpt_dcache_dir(g->opts.dcache), strerror(-g->dkey));
		g->dkey = -1;
		g->key[0] = 0;
	}
	return 0;
}

int ckpt_engine_open(struct ckpt_engine *g, const char *src, const struct ckpt_opts *o,
		     struct ckpt_err *e)
{
	int rc;

	memset(g, 0, sizeof(*g));
	g->dkey = -1;
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
	if ((rc = plan_blocks(g))) {
		ckpt_err_set(e, rc, "out of memory");
		goto fail_io;
	}
	if ((rc = attach_cache(g, e)))
		goto fail_io;
	return 0;
fail_io:
	free_blocks(g);
	ckpt_chunkio_free(g->io);
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
	free_blocks(g);
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

#define LD(x) ((unsigned long long)__atomic_load_n(&(x), __ATOMIC_RELAXED))

size_t ckpt_engine_stats(struct ckpt_engine *g, char *buf, size_t n)
{
	struct ckpt_io_stats *s = ckpt_chunkio_stats(g->io);
	struct ckpt_dcache_stats ds = { 0 };
	struct ckpt_blocks_stats bs = { 0 };
	if (g->opts.dcache)
		ckpt_dcache_stats(g->opts.dcache, &ds);
	if (g->opts.blocks)
		ckpt_blocks_stats(g->opts.blocks, &bs);
	int w = snprintf(buf, n,
			 "reads %llu\nbytes_served %llu\nread_errors %llu\nbytes_read_from_source %llu\n"
			 "bytes_converted %llu\nitem_cache_loads %llu\nitem_cache_hits %llu\n"
			 "blocks_made %llu\ncache_hits %llu\ncache_misses %llu\ncache_corrupt %llu\n"
			 "cache_writes %llu\ncache_write_skips %llu\ncache_evictions %llu\n"
			 "cache_bytes %llu\ncache_blocks %llu\nprefetch_issued %llu\n"
			 "prefetch_made %llu\nprefetch_hits %llu\nprefetch_waits %llu\n"
			 "bytes_converted_gpu %llu\n",
			 LD(g->reads), LD(g->bytes_served), LD(g->read_errors), LD(s->bytes_read),
			 LD(s->bytes_converted), LD(s->item_loads), LD(s->item_hits), LD(g->blocks_made),
			 (unsigned long long)ds.hits, (unsigned long long)ds.misses,
			 (unsigned long long)ds.corrupt, (unsigned long long)ds.writes,
			 (unsigned long long)ds.write_skips, (unsigned long long)ds.evictions,
			 (unsigned long long)ds.bytes, (unsigned long long)ds.blocks,
			 (unsigned long long)bs.issued, (unsigned long long)bs.made,
			 (unsigned long long)bs.hits, (unsigned long long)bs.waits,
			 ckpt_convert_offloaded_bytes());
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

/* Bytes [off, off+len) of weights file f's data section, made directly. */
static int serve_range(struct ckpt_engine *g, const struct ckpt_vfile *f, uint64_t off, size_t len,
		       uint8_t *dst, struct ckpt_err *e)
{
	size_t done = 0;
	int rc;
	for (size_t i = find_extent(f, off); done < len && i < f->next; i++) {
		const struct ckpt_extent *x = &f->ext[i];
		uint64_t pos = off + done, toff = pos - x->start;
		uint64_t n = x->t->nbytes - toff;
		if (n > len - done)
			n = len - done;
		if ((rc = ckpt_serve(g->io, x->t, toff, n, dst + done, e)))
			return rc;
		done += (size_t)n;
	}
	if (done < len)
		return ckpt_err_set(e, -EIO, "%s: no tensor holds bytes %llu+%zu", f->name,
				    (unsigned long long)(off + done), len - done);
	return 0;
}

static int is_costly(const struct ckpt_engine *g, size_t idx, uint64_t blk)
{
	return g->costly[idx] && (g->costly[idx][blk / 8] >> (blk % 8) & 1);
}

/* File offsets [*a, *z) of block blk: the data section's part of it. */
static void block_bounds(const struct ckpt_vfile *f, uint64_t blk, uint64_t *a, uint64_t *z)
{
	*a = blk * CKPT_BLOCK < f->head_len ? f->head_len : blk * CKPT_BLOCK;
	*z = (blk + 1) * CKPT_BLOCK < f->size ? (blk + 1) * CKPT_BLOCK : f->size;
}

static size_t block_length(void *owner, uint32_t file, uint64_t blk)
{
	struct ckpt_engine *g = owner;
	uint64_t a, z;
	if (file >= g->layout.n || blk > g->layout.f[file].size / CKPT_BLOCK || !is_costly(g, file, blk))
		return 0;
	block_bounds(&g->layout.f[file], blk, &a, &z);
	return z > a ? (size_t)(z - a) : 0;
}

/* Block blk of file (len bytes): from the on-disk cache, or made and then
 * stored there. */
static int block_fill(void *owner, uint32_t file, uint64_t blk, uint8_t *buf, size_t len,
		      struct ckpt_err *e)
{
	struct ckpt_engine *g = owner;
	const struct ckpt_vfile *f = &g->layout.f[file];
	uint64_t a, z;
	int rc;

	if (g->dkey >= 0 && !ckpt_dcache_get(g->opts.dcache, g->dkey, file, blk, buf, len))
		return 0;
	block_bounds(f, blk, &a, &z);
	if ((rc = serve_range(g, f, a, len, buf, e)))
		return rc;
	__atomic_fetch_add(&g->blocks_made, 1, __ATOMIC_RELAXED);
	if (g->dkey >= 0)
		ckpt_dcache_put(g->opts.dcache, g->dkey, file, blk, buf, len);  /* best effort */
	return 0;
}

static const struct ckpt_block_src block_src = { block_length, block_fill };

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
	if (!g->opts.blocks && g->dkey < 0 && done < len) {  /* nothing keeps blocks: one run */
		if ((rc = serve_range(g, f, off + done, len - done, dst + done, e)))
			return rc;
		done = len;
	}
	while (done < len) {
		uint64_t pos = off + done, blk = pos / CKPT_BLOCK, a, z;
		block_bounds(f, blk, &a, &z);
		size_t n = z - pos < len - done ? (size_t)(z - pos) : len - done;
		if (!is_costly(g, idx, blk)) {
			rc = serve_range(g, f, pos, n, dst + done, e);
			if (!rc && g->opts.blocks && g->costly[idx])
				ckpt_blocks_note(g->opts.blocks, &block_src, g, (uint32_t)idx, blk);
		} else if (g->opts.blocks) {
			rc = ckpt_blocks_read(g->opts.blocks, &block_src, g, (uint32_t)idx, blk,
					      (size_t)(z - a), (size_t)(pos - a), n, dst + done, e);
		} else if (pos == a && n == z - a) {
			rc = block_fill(g, (uint32_t)idx, blk, dst + done, n, e);
		} else {  /* part of a block, with the on-disk cache: make (or fetch) all of it */
			uint8_t *tmp = malloc((size_t)(z - a));
			rc = tmp ? block_fill(g, (uint32_t)idx, blk, tmp, (size_t)(z - a), e)
				 : ckpt_err_set(e, -ENOMEM, "out of memory");
			if (!rc)
				memcpy(dst + done, tmp + (pos - a), n);
			free(tmp);
		}
		if (rc)
			return rc;
		done += n;
	}
	*got = done;
	return 0;
}

/* coverage.c - see coverage.h. */
#include "config.h"
#include "coverage.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Appends a chunk (duplicates are removed later, after sorting).  Returns
 * 0, -EOVERFLOW when its element count overflows, or -ENOMEM. */
int ckpt_tensor_add_chunk(struct ckpt_tensor *t, const int64_t *off, const int64_t *size)
{
	uint64_t numel = 1;
	for (int d = 0; d < t->ndim; d++)
		if (__builtin_mul_overflow(numel, (uint64_t)size[d], &numel))
			return -EOVERFLOW;
	if (numel == 0)
		return 0;  /* zero-size chunks carry no data and may be out of range */
	if (t->nchunks == t->chunks_cap) {
		size_t nc = t->chunks_cap ? t->chunks_cap * 2 : 4;
		struct ckpt_chunk *na = realloc(t->chunks, nc * sizeof(*na));
		if (!na)
			return -ENOMEM;
		t->chunks = na;
		t->chunks_cap = nc;
	}
	struct ckpt_chunk *ch = &t->chunks[t->nchunks++];
	memset(ch, 0, sizeof(*ch));
	memcpy(ch->off, off, sizeof(int64_t) * (size_t)t->ndim);
	memcpy(ch->size, size, sizeof(int64_t) * (size_t)t->ndim);
	ch->numel = numel;
	return 0;
}

static int boxes_intersect(const struct ckpt_chunk *a, const struct ckpt_chunk *b, int ndim)
{
	for (int d = 0; d < ndim; d++)
		if (a->off[d] + a->size[d] <= b->off[d] || b->off[d] + b->size[d] <= a->off[d])
			return 0;
	return 1;
}

static int sort_dim, sort_ndim;  /* qsort has no context; guarded by sort_lock */

static int cmp_chunk(const void *a, const void *b)
{
	const struct ckpt_chunk *x = a, *y = b;
	if (x->off[sort_dim] != y->off[sort_dim])
		return x->off[sort_dim] < y->off[sort_dim] ? -1 : 1;
	for (int d = 0; d < sort_ndim; d++) {
		if (x->off[d] != y->off[d])
			return x->off[d] < y->off[d] ? -1 : 1;
		if (x->size[d] != y->size[d])
			return x->size[d] < y->size[d] ? -1 : 1;
	}
	return 0;
}

/* The dimension the chunks are split along most (the one with the most
 * distinct offsets): sweeping along it compares only chunks that can meet. */
static int split_dim(const struct ckpt_tensor *t)
{
	int best = 0;
	size_t best_n = 0;
	for (int d = 0; d < t->ndim; d++) {
		size_t distinct = 0;
		for (size_t i = 0; i < t->nchunks && distinct <= best_n; i++)
			distinct += t->chunks[i].off[d] != 0;
		if (distinct > best_n) {
			best = d;
			best_n = distinct;
		}
	}
	return best;
}

/* Bounds, duplicates, overlaps and holes.  Chunks are sorted along their
 * split dimension, identical duplicates dropped, and only chunks whose
 * ranges on that dimension meet are compared: near linear for the usual
 * row- or column-sharded tensors, even with thousands of ranks. */
int ckpt_tensor_check_coverage(const char *where, struct ckpt_tensor *t, int allow_holes,
			       struct ckpt_err *e)
{
	static pthread_mutex_t sort_lock = PTHREAD_MUTEX_INITIALIZER;
	uint64_t covered = 0;
	int sd = 0;

	for (size_t i = 0; i < t->nchunks; i++) {
		const struct ckpt_chunk *ch = &t->chunks[i];
		for (int d = 0; d < t->ndim; d++)  /* no addition: offsets may be near 2^63 */
			if (ch->off[d] < 0 || ch->size[d] < 0 || ch->size[d] > t->shape[d] ||
			    ch->off[d] > t->shape[d] - ch->size[d])
				return ckpt_err_set(e, -EINVAL, "%s: key '%s': a chunk (dim %d: offset "
						    "%lld + size %lld) lies outside the shape (%lld)",
						    where, t->name, d, (long long)ch->off[d],
						    (long long)ch->size[d], (long long)t->shape[d]);
	}
	if (t->nchunks > 1 && t->ndim > 0) {
		sd = split_dim(t);
		pthread_mutex_lock(&sort_lock);
		sort_dim = sd;
		sort_ndim = t->ndim;
		qsort(t->chunks, t->nchunks, sizeof(*t->chunks), cmp_chunk);
		pthread_mutex_unlock(&sort_lock);
		size_t w = 1;
		for (size_t i = 1; i < t->nchunks; i++)  /* identical duplicates are adjacent now */
			if (memcmp(t->chunks[i].off, t->chunks[w - 1].off, sizeof(int64_t) * (size_t)t->ndim) ||
			    memcmp(t->chunks[i].size, t->chunks[w - 1].size, sizeof(int64_t) * (size_t)t->ndim))
				t->chunks[w++] = t->chunks[i];
		t->nchunks = w;
	} else if (t->nchunks > 1) {
		t->nchunks = 1;  /* 0-d: every chunk is the whole (one-element) tensor */
	}
	for (size_t i = 0; i < t->nchunks; i++) {
		const struct ckpt_chunk *ch = &t->chunks[i];
		for (size_t j = i + 1; j < t->nchunks && (t->ndim == 0 ||
		     t->chunks[j].off[sd] < ch->off[sd] + ch->size[sd]); j++)
			if (boxes_intersect(ch, &t->chunks[j], t->ndim))
				return ckpt_err_set(e, -EINVAL, "%s: key '%s': chunks at offsets %lld and "
						    "%lld (dim %d) partly overlap", where, t->name,
						    (long long)(t->ndim ? ch->off[sd] : 0),
						    (long long)(t->ndim ? t->chunks[j].off[sd] : 0), sd);
		covered += ch->numel;
	}
	if (covered == t->numel)
		return 0;
	if (!allow_holes)
		return ckpt_err_set(e, -EINVAL, "%s: key '%s': chunks cover %llu of %llu elements "
				    "(a hole; use -o allow_holes to zero-fill it)", where,
				    t->name, (unsigned long long)covered, (unsigned long long)t->numel);
	t->holes = 1;  /* the caller warns once it has accepted the holes */
	return 0;
}


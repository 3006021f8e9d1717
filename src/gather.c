/* gather.c - see gather.h. */
#include "config.h"
#include "gather.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int chunk_has(const struct ckpt_tensor *t, const struct ckpt_chunk *ch, const int64_t *idx)
{
	for (int d = 0; d < t->ndim; d++)
		if (idx[d] < ch->off[d] || idx[d] >= ch->off[d] + ch->size[d])
			return 0;
	return 1;
}

/* Length of the hole starting at idx, within the innermost row. */
static uint64_t hole_run(const struct ckpt_tensor *t, const int64_t *idx)
{
	int last = t->ndim - 1;
	if (t->ndim == 0)
		return 1;
	int64_t end = t->shape[last];
	for (size_t i = 0; i < t->nchunks; i++) {
		const struct ckpt_chunk *ch = &t->chunks[i];
		int d;
		for (d = 0; d < last; d++)
			if (idx[d] < ch->off[d] || idx[d] >= ch->off[d] + ch->size[d])
				break;
		if (d == last && ch->off[last] > idx[last] && ch->off[last] < end)
			end = ch->off[last];
	}
	return (uint64_t)(end - idx[last]);
}

/* C-order strides of t's global shape, in elements. */
static void c_strides(const struct ckpt_tensor *t, uint64_t *gstride)
{
	uint64_t s = 1;
	for (int d = t->ndim - 1; d >= 0; d--) {
		gstride[d] = s;
		s *= (uint64_t)t->shape[d];
	}
}

int ckpt_gather_elems(struct ckpt_chunkio *io, const struct ckpt_tensor *t, uint64_t first,
		      uint64_t n, uint8_t *dst, struct ckpt_err *e)
{
	size_t es = ckpt_dtype_size(t->dtype);
	uint64_t gstride[CKPT_MAXDIM], p = first, end = first + n;
	int64_t idx[CKPT_MAXDIM];
	size_t hint = 0;
	int rc;

	if (first > t->numel || n > t->numel - first)
		return ckpt_err_set(e, -EINVAL, "tensor '%s': elements %llu+%llu lie beyond its %llu",
				    t->name, (unsigned long long)first, (unsigned long long)n,
				    (unsigned long long)t->numel);
	c_strides(t, gstride);
	while (p < end) {
		uint64_t rem = p;
		for (int d = 0; d < t->ndim; d++) {
			idx[d] = (int64_t)(rem / gstride[d]);
			rem %= gstride[d];
		}
		struct ckpt_chunk *ch = NULL;
		for (size_t k = 0; k < t->nchunks; k++) {
			size_t i = (hint + k) % t->nchunks;
			if (chunk_has(t, &t->chunks[i], idx)) {
				ch = &t->chunks[i];
				hint = i;
				break;
			}
		}
		uint64_t run;
		if (!ch) {
			run = hole_run(t, idx);
			if (run > end - p)
				run = end - p;
			memset(dst + (p - first) * es, 0, run * es);
			p += run;
			continue;
		}
		/* innermost dimension the chunk does not span fully */
		int k = t->ndim - 1;
		while (k >= 0 && ch->size[k] == t->shape[k])
			k--;
		if (k < 0) {
			run = t->numel - p;
		} else {
			uint64_t r = 0;
			for (int d = k + 1; d < t->ndim; d++)
				r += (uint64_t)idx[d] * gstride[d];
			run = (uint64_t)(ch->off[k] + ch->size[k] - idx[k]) * gstride[k] - r;
		}
		if (run > end - p)
			run = end - p;
		uint64_t local = 0, ls = 1;
		for (int d = t->ndim - 1; d >= 0; d--) {
			local += (uint64_t)(idx[d] - ch->off[d]) * ls;
			ls *= (uint64_t)ch->size[d];
		}
		if ((rc = ckpt_chunkio_copy(io, t, ch, local, run, dst + (p - first) * es, e)))
			return rc;
		p += run;
	}
	return 0;
}

/* A transposed box: output element x is source (.., r, c) with c = x / R and
 * r = x % R, R the box's row count.  Whole source column blocks are gathered
 * (a plain box) and picked from, so memory stays bounded by the block. */
static int gather_transposed(struct ckpt_chunkio *io, const struct ckpt_segment *sg,
			     uint64_t first, uint64_t n, uint8_t *dst, struct ckpt_err *e)
{
	const struct ckpt_tensor *t = sg->src;
	size_t es = ckpt_dtype_size(t->dtype);
	int d1 = t->ndim - 2, d2 = t->ndim - 1;
	uint64_t R = (uint64_t)(sg->hi[d1] - sg->lo[d1]), end = first + n;
	uint64_t kmax = R >= 65536 ? 1 : 65536 / (R ? R : 1);
	uint8_t *tmp = malloc(R * kmax * es + 1);
	int rc = 0;

	if (!tmp)
		return ckpt_err_set(e, -ENOMEM, "out of memory");
	for (uint64_t x = first; x < end && !rc;) {
		uint64_t c0 = x / R, c1 = (end - 1) / R + 1;
		uint64_t k = c1 - c0 < kmax ? c1 - c0 : kmax;
		struct ckpt_segment sub = *sg;
		sub.transpose = 0;
		sub.lo[d2] = sg->lo[d2] + (int64_t)c0;
		sub.hi[d2] = sub.lo[d2] + (int64_t)k;
		sub.numel = R * k;
		if ((rc = ckpt_gather_box(io, &sub, 0, sub.numel, tmp, e)))
			break;
		for (; x < end && x < (c0 + k) * R; x++) {
			uint64_t c = x / R - c0, r = x % R;
			memcpy(dst + (x - first) * es, tmp + (r * k + c) * es, es);
		}
	}
	free(tmp);
	return rc;
}

int ckpt_gather_box(struct ckpt_chunkio *io, const struct ckpt_segment *sg, uint64_t first,
		    uint64_t n, uint8_t *dst, struct ckpt_err *e)
{
	const struct ckpt_tensor *t = sg->src;
	size_t es = ckpt_dtype_size(t->dtype);
	uint64_t gstride[CKPT_MAXDIM], run = 1;
	int k, rc;

	if (first > sg->numel || n > sg->numel - first)
		return ckpt_err_set(e, -EINVAL, "segment of '%s': elements %llu+%llu lie beyond its %llu",
				    t->name, (unsigned long long)first, (unsigned long long)n,
				    (unsigned long long)sg->numel);
	if (sg->transpose && t->ndim >= 2)
		return gather_transposed(io, sg, first, n, dst, e);
	c_strides(t, gstride);
	/* the box is a sequence of runs contiguous in the source: dims after k
	 * are full, dim k is partial (or k < 0: the whole tensor) */
	for (k = t->ndim - 1; k >= 0 && sg->lo[k] == 0 && sg->hi[k] == t->shape[k]; k--)
		run *= (uint64_t)t->shape[k];
	if (k >= 0)
		run *= (uint64_t)(sg->hi[k] - sg->lo[k]);
	while (n > 0) {
		if (run == 0)
			return 0;
		uint64_t r = first / run, o = first % run, start = 0;
		/* run r -> outer index over dims < k, in the box */
		for (int d = k - 1; d >= 0; d--) {
			uint64_t ext = (uint64_t)(sg->hi[d] - sg->lo[d]);
			start += ((uint64_t)sg->lo[d] + r % ext) * gstride[d];
			r /= ext;
		}
		if (k >= 0)
			start += (uint64_t)sg->lo[k] * gstride[k];
		uint64_t take = run - o < n ? run - o : n;
		if ((rc = ckpt_gather_elems(io, t, start + o, take, dst, e)))
			return rc;
		dst += take * es;
		first += take;
		n -= take;
	}
	return 0;
}

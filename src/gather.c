/* gather.c - see gather.h. */
#include "config.h"
#include "gather.h"

#include <errno.h>
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

/* Copies elements [first, first+n) of t (global C order) to dst. */
static int gather_elems(struct ckpt_chunkio *io, const struct ckpt_tensor *t, uint64_t first,
			uint64_t n, uint8_t *dst, struct ckpt_err *e)
{
	size_t es = ckpt_dtype_size(t->dtype);
	uint64_t gstride[CKPT_MAXDIM], p = first, end = first + n;
	int64_t idx[CKPT_MAXDIM];
	size_t hint = 0;
	int rc;

	uint64_t s = 1;
	for (int d = t->ndim - 1; d >= 0; d--) {
		gstride[d] = s;
		s *= (uint64_t)t->shape[d];
	}
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

int ckpt_gather(struct ckpt_chunkio *io, const struct ckpt_tensor *t, uint64_t off,
		uint64_t len, uint8_t *dst, struct ckpt_err *e)
{
	size_t es = ckpt_dtype_size(t->dtype);
	uint8_t tmp[16];
	int rc;

	if (off > t->nbytes || len > t->nbytes - off)
		return ckpt_err_set(e, -EINVAL, "tensor '%s': read of bytes %llu+%llu beyond its %llu "
				    "bytes", t->name, (unsigned long long)off,
				    (unsigned long long)len, (unsigned long long)t->nbytes);
	/* a partial first element */
	if (len && off % es) {
		uint64_t skip = off % es, take = es - skip < len ? es - skip : len;
		if ((rc = gather_elems(io, t, off / es, 1, tmp, e)))
			return rc;
		memcpy(dst, tmp + skip, take);
		dst += take;
		off += take;
		len -= take;
	}
	uint64_t whole = len / es;
	if (whole && (rc = gather_elems(io, t, off / es, whole, dst, e)))
		return rc;
	dst += whole * es;
	off += whole * es;
	len -= whole * es;
	if (len) {  /* a partial last element */
		if ((rc = gather_elems(io, t, off / es, 1, tmp, e)))
			return rc;
		memcpy(dst, tmp, len);
	}
	return 0;
}

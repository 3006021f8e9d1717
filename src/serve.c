/* serve.c - see serve.h. */
#include "config.h"
#include "serve.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "gather.h"


/* Segment holding element x of t: binary search over cumulative counts
 * would need a table; recipes are short (a few segments) except row
 * permutations, so walk with a running start, hinted by the caller. */
static size_t find_segment(const struct ckpt_vtensor *t, uint64_t x, uint64_t *seg_start)
{
	uint64_t s = 0;
	for (size_t i = 0; i < t->nseg; i++) {
		if (x < s + t->seg[i].numel) {
			*seg_start = s;
			return i;
		}
		s += t->seg[i].numel;
	}
	*seg_start = s;
	return t->nseg;
}

/* Gathers elements of sg in its source dtype, block by block, and converts
 * them to dtype into dst. */
static int gather_converted(struct ckpt_chunkio *io, const struct ckpt_segment *sg,
			    enum ckpt_dtype to, uint64_t first, uint64_t n, uint8_t *dst,
			    struct ckpt_err *e)
{
	enum ckpt_dtype from = sg->src->dtype;
	size_t ein = ckpt_dtype_size(from), eout = ckpt_dtype_size(to);
	uint8_t *buf;
	int rc = 0;

	if (!ckpt_convert_supported(from, to))
		return ckpt_err_set(e, -ENOTSUP, "tensor '%s': no conversion from %s to %s",
				    sg->src->name, ckpt_dtype_name(from), ckpt_dtype_name(to));
	uint64_t batch = ckpt_convert_batch();  /* elements gathered per conversion step */
	if (!(buf = malloc((n < batch ? n : batch) * ein)))
		return ckpt_err_set(e, -ENOMEM, "out of memory");
	while (n > 0 && !rc) {
		uint64_t take = n < batch ? n : batch;
		if (!(rc = ckpt_gather_box(io, sg, first, take, buf, e))) {
			ckpt_convert(from, to, buf, dst, take);
			__atomic_fetch_add(&ckpt_chunkio_stats(io)->bytes_converted, take * eout,
					   __ATOMIC_RELAXED);
			dst += take * eout;
			first += take;
			n -= take;
		}
	}
	free(buf);
	return rc;
}

/* Whole elements [first, first+n) of t into dst, served dtype. */
static int serve_elems(struct ckpt_chunkio *io, const struct ckpt_vtensor *t, uint64_t first,
		       uint64_t n, uint8_t *dst, struct ckpt_err *e)
{
	size_t es = ckpt_dtype_size(t->dtype);
	uint64_t s0;
	size_t i = find_segment(t, first, &s0);
	int rc;

	while (n > 0) {
		if (i >= t->nseg)
			return ckpt_err_set(e, -EINVAL, "tensor '%s': recipe shorter than its shape",
					    t->name);
		const struct ckpt_segment *sg = &t->seg[i];
		uint64_t in = first - s0, take = sg->numel - in < n ? sg->numel - in : n;
		if (sg->src->dtype == t->dtype) {
			if ((rc = ckpt_gather_box(io, sg, in, take, dst, e)))
				return rc;
		} else if ((rc = gather_converted(io, sg, t->dtype, in, take, dst, e))) {
			return rc;
		}
		dst += take * es;
		first += take;
		n -= take;
		s0 += sg->numel;
		i++;
	}
	return 0;
}

int ckpt_serve(struct ckpt_chunkio *io, const struct ckpt_vtensor *t, uint64_t off, uint64_t len,
	       uint8_t *dst, struct ckpt_err *e)
{
	size_t es = ckpt_dtype_size(t->dtype);
	uint8_t tmp[16];
	int rc;

	if (off > t->nbytes || len > t->nbytes - off)
		return ckpt_err_set(e, -EINVAL, "tensor '%s': read of bytes %llu+%llu beyond its %llu "
				    "bytes", t->name, (unsigned long long)off,
				    (unsigned long long)len, (unsigned long long)t->nbytes);
	if (len && off % es) {  /* a partial first element */
		uint64_t skip = off % es, take = es - skip < len ? es - skip : len;
		if ((rc = serve_elems(io, t, off / es, 1, tmp, e)))
			return rc;
		memcpy(dst, tmp + skip, take);
		dst += take;
		off += take;
		len -= take;
	}
	uint64_t whole = len / es;
	if (whole && (rc = serve_elems(io, t, off / es, whole, dst, e)))
		return rc;
	dst += whole * es;
	off += whole * es;
	len -= whole * es;
	if (len) {  /* a partial last element */
		if ((rc = serve_elems(io, t, off / es, 1, tmp, e)))
			return rc;
		memcpy(dst, tmp, len);
	}
	return 0;
}

/* gpu_none.c - gpu.h when ckptfs is built without CUDA. */
#include "config.h"
#include "gpu.h"

#include <errno.h>

int ckpt_gpu_open(struct ckpt_gpu **out, size_t chunk_bytes, struct ckpt_err *e)
{
	(void)chunk_bytes;
	*out = NULL;
	return ckpt_err_set(e, -ENOTSUP, "this ckptfs was built without CUDA (./configure --enable-cuda)");
}

void ckpt_gpu_close(struct ckpt_gpu *g)
{
	(void)g;
}

const char *ckpt_gpu_name(const struct ckpt_gpu *g)
{
	(void)g;
	return "none";
}

int ckpt_gpu_convert(struct ckpt_gpu *g, enum ckpt_dtype from, enum ckpt_dtype to, const void *src,
		     void *dst, size_t n, struct ckpt_err *e)
{
	(void)g; (void)from; (void)to; (void)src; (void)dst; (void)n;
	return ckpt_err_set(e, -ENOTSUP, "this ckptfs was built without CUDA");
}

uint64_t ckpt_gpu_bytes(struct ckpt_gpu *g)
{
	(void)g;
	return 0;
}

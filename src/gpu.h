/* gpu.h - dtype conversion on an NVIDIA GPU (./configure --enable-cuda).
 *
 * The same conversions as ckpt_convert, bit for bit (the kernel runs the
 * element functions of convert_ref.h), for large batches: the host data is
 * staged through pinned buffers in chunks, two CUDA streams alternating so
 * that one chunk's copies overlap the other's kernel.  Built without CUDA,
 * or on a machine without a usable device, ckpt_gpu_open says so and the
 * caller converts on the CPU. */
#ifndef CKPT_GPU_H
#define CKPT_GPU_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "err.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ckpt_gpu;

/* Opens device 0 with staging chunks of chunk_bytes (of source data) per
 * stream.  -ENOTSUP when built without CUDA, -ENODEV when no device or
 * driver is usable; the message in e says which. */
int ckpt_gpu_open(struct ckpt_gpu **out, size_t chunk_bytes, struct ckpt_err *e);

/* Frees everything (NULL is fine). */
void ckpt_gpu_close(struct ckpt_gpu *g);

/* The device's name ("NVIDIA H100 80GB HBM3"). */
const char *ckpt_gpu_name(const struct ckpt_gpu *g);

/* Converts n elements from src to dst (host memory, any alignment) as
 * ckpt_convert does; from == to is refused (-EINVAL), like every pair
 * ckpt_convert_supported refuses.  Calls are serialised (one mutex), as
 * the staging buffers are shared.  Returns 0 or -EIO with the CUDA error
 * in e; dst is then undefined. */
int ckpt_gpu_convert(struct ckpt_gpu *g, enum ckpt_dtype from, enum ckpt_dtype to, const void *src,
		     void *dst, size_t n, struct ckpt_err *e);

/* Bytes of output produced so far.  Thread-safe. */
uint64_t ckpt_gpu_bytes(struct ckpt_gpu *g);

#ifdef __cplusplus
}
#endif

#endif

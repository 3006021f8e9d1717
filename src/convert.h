/* convert.h - dtype conversion of tensor bytes on read (fp32 -> bf16 and
 * friends), bit-identical to PyTorch's CPU `tensor.to(dtype)`.
 *
 * Supported pairs: F32->BF16, F32->F16, BF16->F32, F16->F32, F64->F32,
 * F64->BF16, F64->F16, BF16->F16, F16->BF16, plus identity copies of
 * F64, F32, F16 and BF16.  Data is little-endian, as on the host.
 *
 * Semantics, checked against torch 2.15 on x86-64 (AVX-512 build) by
 * tests/unit/gen_convert_vectors.py:
 *
 *  - Rounding is IEEE round-to-nearest-even; subnormals are kept, never
 *    flushed, on input and output; values past the largest finite target
 *    value (after rounding) become +-inf; +-inf and +-0 are kept.
 *  - F64 -> BF16 and F64 -> F16 round twice, F64 -> F32 first and then
 *    F32 -> target, as torch does (1 + 2^-8 + 2^-30 gives bf16 1.0, not the
 *    correctly rounded 1.0078125).
 *  - BF16 -> F16 and F16 -> BF16 go through the exact F32 value.
 *  - BF16 -> F32 and F16 -> F32 are exact.
 *
 * NaN policy: the bit pattern that torch's vectorised CPU path produces for
 * a large contiguous tensor, i.e. `t.contiguous().to(dtype)` with the tensor
 * covering whole SIMD vectors:
 *
 *  - F32 -> BF16 and F64 -> BF16: every NaN becomes 0xFFFF (ATen's
 *    cvtfp32_bf16 blend).  Torch's scalar path gives 0x7FC0 instead: for
 *    strided and 0-dim tensors, and for F64 also for the last (n mod 16)
 *    elements of each thread's chunk of n elements.
 *  - F16 -> BF16: every NaN becomes 0x7FC0 (on every torch path, contiguous
 *    or not).
 *  - -> F16 (from F32, F64, BF16): the sign is kept, the NaN is made quiet
 *    and the top 10 payload bits of the F32 value are kept:
 *    sign | 0x7E00 | (f32 mantissa >> 13) (vcvtps2ph).
 *  - F64 -> F32: sign | 0x7FC00000 | (f64 mantissa >> 29) (vcvtpd2ps).
 *  - F16 -> F32: sign | 0x7FC00000 | (f16 mantissa << 13) (vcvtph2ps).  Torch
 *    gives 0x7FFFFFFF for the last (n mod 8) elements of each thread's
 *    chunk of n elements (so for all of a tensor shorter than 8).
 *  - BF16 -> F32: the bits shifted left by 16, signalling NaNs included.
 *  - Identity copies keep every bit.
 *
 * The fast kernels assume the default floating-point environment (no
 * flush-to-zero / denormals-are-zero, round-to-nearest), which holds unless
 * the process was linked with -ffast-math.  The reference uses integer
 * arithmetic only.
 */
#ifndef CKPT_CONVERT_H
#define CKPT_CONVERT_H

/* Bumped when any kernel could produce other bytes for the same input (it
 * names the on-disk cache's blocks). */
#define CKPT_CONVERT_VERSION 1

#include <stddef.h>

#include "dtype.h"

/* Whether ckptfs can convert from -> to: F64, F32, F16 and BF16 sources;
 * F32, F16 and BF16 targets; from == to (one of those four) is a copy.
 * Pure. */
int ckpt_convert_supported(enum ckpt_dtype from, enum ckpt_dtype to);

/* Converts n elements from src to dst, exactly as torch's CPU
 * tensor.to(dtype) does (see the NaN policy above).  src and dst must not
 * overlap; neither needs any alignment.  Uses the fastest kernel this CPU
 * supports.  Thread-safe, allocates nothing, no global state besides a
 * one-time CPU feature detection (and the offload, if set).  For a pair ckpt_convert_supported()
 * refuses, nothing is written. */
void ckpt_convert(enum ckpt_dtype from, enum ckpt_dtype to, const void *src, void *dst, size_t n);

/* An offload of large conversions (the GPU path, gpu.h): fn converts n
 * elements like ckpt_convert and returns 0, or nonzero to leave the call to
 * the CPU kernels. */
typedef int ckpt_convert_offload_fn(void *ctx, enum ckpt_dtype from, enum ckpt_dtype to,
				    const void *src, void *dst, size_t n);

/* Routes ckpt_convert calls of at least min_elems elements (not identity
 * copies) to fn (NULL: none).  Call before any conversion runs (no
 * synchronisation with concurrent ckpt_convert calls). */
void ckpt_convert_set_offload(ckpt_convert_offload_fn *fn, void *ctx, size_t min_elems);

/* How many elements a caller converting a long run should pass per
 * ckpt_convert call: 65536 (L2-sized blocks), or the offload's minimum
 * when one is set. */
size_t ckpt_convert_batch(void);

/* Output bytes the offload has produced.  Thread-safe. */
unsigned long long ckpt_convert_offloaded_bytes(void);

/* The scalar reference (integer arithmetic only), same contract as
 * ckpt_convert; the fast kernels agree with it bit for bit. */
void ckpt_convert_ref(enum ckpt_dtype from, enum ckpt_dtype to, const void *src, void *dst, size_t n);

/* Name of the kernel ckpt_convert uses for (from, to) on this CPU:
 * "avx512", "avx2+f16c", "generic" (portable C the compiler vectorises),
 * "scalar", "memcpy", or "unsupported".  Static string. */
const char *ckpt_convert_kernel(enum ckpt_dtype from, enum ckpt_dtype to);

/* For tests and benchmarks: converts like ckpt_convert but with kernel tier
 * `tier` (0 = generic, 1 = avx2+f16c, 2 = avx512) instead of the best one.
 * Returns the kernel name as ckpt_convert_kernel() would, or NULL (writing
 * nothing) when the pair is unsupported or the tier does not exist or does
 * not run on this CPU. */
const char *ckpt__convert_tier(int tier, enum ckpt_dtype from, enum ckpt_dtype to, const void *src, void *dst,
			       size_t n);

#endif

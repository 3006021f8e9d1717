/* convert_ref.h - the reference conversions of one element, integer
 * arithmetic only (see convert.h for the semantics and the NaN policy).
 * Shared by the CPU reference (convert.c) and the CUDA kernel
 * (gpu_cuda.cu), so both give the same bits by construction. */
#ifndef CKPT_CONVERT_REF_H
#define CKPT_CONVERT_REF_H

#include <stdint.h>

#ifdef __CUDACC__
#define CKPT_HD __host__ __device__
#else
#define CKPT_HD
#endif

/* c10::BFloat16's round_to_nearest_even; `nan` is what a NaN becomes. */
CKPT_HD static inline uint16_t ref_f32_bf16(uint32_t u, uint16_t nan)
{
	if ((u & 0x7FFFFFFFu) > 0x7F800000u)
		return nan;
	return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

/* IEEE binary32 -> binary16, round to nearest even, NaNs as vcvtps2ph. */
CKPT_HD static inline uint16_t ref_f32_f16(uint32_t u)
{
	uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
	uint32_t a = u & 0x7FFFFFFFu, m;
	unsigned e, sh;

	if (a > 0x7F800000u) /* NaN: quiet, top 10 payload bits */
		return (uint16_t)(sign | 0x7E00u | ((a >> 13) & 0x3FFu));
	if (a >= 0x477FF000u) /* >= 65520 (65504 + half an ulp) and inf */
		return (uint16_t)(sign | 0x7C00u);
	if (a >= 0x38800000u) { /* >= 2^-14: normal; rebias 127 -> 15 */
		a -= 0x38000000u;
		return (uint16_t)(sign | ((a + 0xFFFu + ((a >> 13) & 1u)) >> 13));
	}
	e = a >> 23;
	if (e < 102) /* < 2^-25, or == 2^-25 (a tie, to even zero) */
		return sign;
	/* Subnormal result: round(m * 2^(e - 126)). */
	m = (a & 0x7FFFFFu) | 0x800000u;
	sh = 126 - e; /* 14..24 */
	return (uint16_t)(sign | ((m + (1u << (sh - 1)) - 1 + ((m >> sh) & 1u)) >> sh));
}

/* IEEE binary16 -> binary32, exact; NaNs made quiet (as vcvtph2ps). */
CKPT_HD static inline uint32_t ref_f16_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;

	if (e == 31)
		return sign | 0x7F800000u | (m ? 0x400000u | (m << 13) : 0);
	if (e != 0)
		return sign | ((e + 112) << 23) | (m << 13);
	if (m == 0)
		return sign;
	e = 113; /* subnormal m * 2^-24: normalise */
	while (!(m & 0x400u)) {
		m <<= 1;
		e--;
	}
	return sign | (e << 23) | ((m & 0x3FFu) << 13);
}

/* IEEE binary64 -> binary32, round to nearest even, NaNs as vcvtpd2ps. */
CKPT_HD static inline uint32_t ref_f64_f32(uint64_t d)
{
	uint32_t sign = (uint32_t)(d >> 32) & 0x80000000u;
	uint64_t a = d & 0x7FFFFFFFFFFFFFFFull, m, r;
	unsigned e, sh;

	if (a > 0x7FF0000000000000ull)
		return sign | 0x7FC00000u | (uint32_t)((a >> 29) & 0x7FFFFFu);
	e = (unsigned)(a >> 52);
	if (e >= 897) { /* >= 2^-126: normal or overflow; rebias 1023 -> 127 */
		r = a - ((uint64_t)896 << 52);
		r = (r + 0xFFFFFFFu + ((r >> 29) & 1u)) >> 29;
		return sign | (r >= 0x7F800000u ? 0x7F800000u : (uint32_t)r);
	}
	if (e < 873) /* < 2^-150, or == 2^-150 (a tie, to even zero) */
		return sign;
	/* Subnormal result: round(m * 2^(e - 926)). */
	m = (a & 0xFFFFFFFFFFFFFull) | (1ull << 52);
	sh = 926 - e; /* 30..53 */
	return sign | (uint32_t)((m + (1ull << (sh - 1)) - 1 + ((m >> sh) & 1u)) >> sh);
}

#endif

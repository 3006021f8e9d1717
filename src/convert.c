/* convert.c - see convert.h.
 *
 * Two implementations:
 *
 *  - the reference: one element at a time, integer arithmetic only, written
 *    after c10's BFloat16/Half code and IEEE 754 (ref_* below);
 *  - the fast kernels: blocks of BLK elements, each split into two stages,
 *    source -> F32 bits and F32 bits -> target (one stage when either side is
 *    F32).  The stages are plain branchless C that the compiler vectorises
 *    (a loop with a constant trip count is vectorised by gcc even at -O2),
 *    except the F16 ones, which use F16C / AVX-512F vcvtps2ph and vcvtph2ps
 *    (exactly what ATen uses).  Each stage set is compiled for three tiers:
 *    generic (the build's baseline ISA), avx2+f16c and avx512; the best tier
 *    the CPU runs is picked once, at the first call.  The last n % BLK
 *    elements go through the reference.
 *
 * Never build this file with -ffast-math: it would flush subnormals.
 */
#include "config.h"
#include "convert.h"
#include "convert_ref.h"

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define CV_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "convert.c assumes a little-endian host"
#endif

#define BLK 256 /* elements per block of the fast kernels */

/* Unaligned, aliasing-safe element access (GNU C; gcc and clang). */
typedef uint16_t u16u __attribute__((aligned(1), may_alias));
typedef uint32_t u32u __attribute__((aligned(1), may_alias));
typedef uint64_t u64u __attribute__((aligned(1), may_alias));
typedef double f64u __attribute__((aligned(1), may_alias));
typedef float f32u __attribute__((aligned(1), may_alias));

/* ---- The reference: one element (convert_ref.h) ---- */

/* ---- Pairs ---- */

/* Source and target indices of the stage tables. */
enum { S_F64, S_F32, S_F16, S_BF16 };
enum { T_F32, T_F16, T_BF16, T_BF16C }; /* BF16C: NaN -> 0x7FC0 */

static int src_index(enum ckpt_dtype dt)
{
	switch (dt) {
	case CKPT_DT_F64: return S_F64;
	case CKPT_DT_F32: return S_F32;
	case CKPT_DT_F16: return S_F16;
	case CKPT_DT_BF16: return S_BF16;
	default: return -1;
	}
}

/* The target index for a conversion pair, or -1. */
static int dst_index(enum ckpt_dtype from, enum ckpt_dtype to)
{
	if (from == to || src_index(from) < 0)
		return -1;
	switch (to) {
	case CKPT_DT_F32: return T_F32;
	case CKPT_DT_F16: return T_F16;
	case CKPT_DT_BF16: return from == CKPT_DT_F16 ? T_BF16C : T_BF16;
	default: return -1;
	}
}

int ckpt_convert_supported(enum ckpt_dtype from, enum ckpt_dtype to)
{
	return from == to ? src_index(from) >= 0 : dst_index(from, to) >= 0;
}

/* One element of any pair, by the reference. */
static inline void ref_one(int si, int ti, const unsigned char *s, unsigned char *d)
{
	uint32_t f;
	uint16_t h;

	switch (si) {
	case S_F64: f = ref_f64_f32(*(const u64u *)s); break;
	case S_F32: f = *(const u32u *)s; break;
	case S_F16: f = ref_f16_f32(*(const u16u *)s); break;
	default: f = (uint32_t)*(const u16u *)s << 16; break;
	}
	switch (ti) {
	case T_F32: *(u32u *)d = f; return;
	case T_F16: h = ref_f32_f16(f); break;
	case T_BF16: h = ref_f32_bf16(f, 0xFFFFu); break;
	default: h = ref_f32_bf16(f, 0x7FC0u); break;
	}
	*(u16u *)d = h;
}

/* The reference over n elements; the switches are hoisted by the compiler
 * only sometimes, which is fine for a reference. */
static void ref_run(int si, int ti, const unsigned char *s, unsigned char *d, size_t n)
{
	static const unsigned char ssz[] = { 8, 4, 2, 2 }, dsz[] = { 4, 2, 2, 2 };
	size_t i;

	for (i = 0; i < n; i++)
		ref_one(si, ti, s + i * ssz[si], d + i * dsz[ti]);
}

void ckpt_convert_ref(enum ckpt_dtype from, enum ckpt_dtype to, const void *src, void *dst, size_t n)
{
	int ti = dst_index(from, to);

	if (from == to && src_index(from) >= 0)
		memcpy(dst, src, n * ckpt_dtype_size(from));
	else if (ti >= 0)
		ref_run(src_index(from), ti, src, dst, n);
}

/* ---- Fast stages: BLK elements each ---- */

typedef void stage_fn(const unsigned char *restrict s, unsigned char *restrict d);

/* Branchless F32 bits -> BF16 (the form ATen's vector code uses). */
static inline __attribute__((always_inline)) uint16_t fast_f32_bf16(uint32_t u, uint16_t nan)
{
	uint32_t r = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
	return (u & 0x7FFFFFFFu) > 0x7F800000u ? nan : (uint16_t)r;
}

/* The stages in plain C, for one tier (ATTR: its target attribute). */
#define PLAIN_STAGES(P, ATTR)                                                                      \
	ATTR static void P##_f64_to32(const unsigned char *restrict s, unsigned char *restrict d)  \
	{                                                                                          \
		const f64u *in = (const f64u *)s;                                                  \
		f32u *out = (f32u *)d;                                                             \
		for (size_t j = 0; j < BLK; j++)                                                   \
			out[j] = (float)in[j];                                                     \
	}                                                                                          \
	ATTR static void P##_bf16_to32(const unsigned char *restrict s, unsigned char *restrict d) \
	{                                                                                          \
		const u16u *in = (const u16u *)s;                                                  \
		u32u *out = (u32u *)d;                                                             \
		for (size_t j = 0; j < BLK; j++)                                                   \
			out[j] = (uint32_t)in[j] << 16;                                            \
	}                                                                                          \
	ATTR static void P##_to_bf16(const unsigned char *restrict s, unsigned char *restrict d)   \
	{                                                                                          \
		const u32u *in = (const u32u *)s;                                                  \
		u16u *out = (u16u *)d;                                                             \
		for (size_t j = 0; j < BLK; j++)                                                   \
			out[j] = fast_f32_bf16(in[j], 0xFFFFu);                                    \
	}                                                                                          \
	ATTR static void P##_to_bf16c(const unsigned char *restrict s, unsigned char *restrict d)  \
	{                                                                                          \
		const u32u *in = (const u32u *)s;                                                  \
		u16u *out = (u16u *)d;                                                             \
		for (size_t j = 0; j < BLK; j++)                                                   \
			out[j] = fast_f32_bf16(in[j], 0x7FC0u);                                    \
	}

PLAIN_STAGES(gen, )

/* Without F16C the generic tier runs the reference for F16. */
static void gen_f16_to32(const unsigned char *restrict s, unsigned char *restrict d)
{
	for (size_t j = 0; j < BLK; j++)
		((u32u *)d)[j] = ref_f16_f32(((const u16u *)s)[j]);
}

static void gen_to_f16(const unsigned char *restrict s, unsigned char *restrict d)
{
	for (size_t j = 0; j < BLK; j++)
		((u16u *)d)[j] = ref_f32_f16(((const u32u *)s)[j]);
}

#ifdef CV_X86
#define ATTR_AVX2 __attribute__((target("avx2,f16c")))
#define ATTR_AVX512 __attribute__((target("avx2,f16c,avx512f,avx512bw,avx512vl")))

PLAIN_STAGES(avx2, ATTR_AVX2)
PLAIN_STAGES(avx512, ATTR_AVX512)

ATTR_AVX2 static void avx2_f16_to32(const unsigned char *restrict s, unsigned char *restrict d)
{
	for (size_t j = 0; j < BLK; j += 8)
		_mm256_storeu_ps((float *)(d + 4 * j), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + 2 * j))));
}

ATTR_AVX2 static void avx2_to_f16(const unsigned char *restrict s, unsigned char *restrict d)
{
	for (size_t j = 0; j < BLK; j += 8)
		_mm_storeu_si128((__m128i *)(d + 2 * j),
				 _mm256_cvtps_ph(_mm256_loadu_ps((const float *)(s + 4 * j)), _MM_FROUND_TO_NEAREST_INT));
}

ATTR_AVX512 static void avx512_f16_to32(const unsigned char *restrict s, unsigned char *restrict d)
{
	for (size_t j = 0; j < BLK; j += 16)
		_mm512_storeu_ps(d + 4 * j, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(s + 2 * j))));
}

ATTR_AVX512 static void avx512_to_f16(const unsigned char *restrict s, unsigned char *restrict d)
{
	for (size_t j = 0; j < BLK; j += 16)
		_mm256_storeu_si256((__m256i *)(d + 2 * j),
				    _mm512_cvtps_ph(_mm512_loadu_ps(s + 4 * j), _MM_FROUND_TO_NEAREST_INT));
}
#endif

/* A tier: its stages, indexed by S_* (to F32 bits) and T_* (from F32 bits;
 * the T_F32 slot is unused). */
struct tier {
	const char *name;
	int f16_vector; /* 0: the F16 stages are the reference ("scalar") */
	stage_fn *to32[4], *from32[4];
};

static const struct tier tiers[] = {
	{ "generic", 0, { gen_f64_to32, NULL, gen_f16_to32, gen_bf16_to32 },
	  { NULL, gen_to_f16, gen_to_bf16, gen_to_bf16c } },
#ifdef CV_X86
	{ "avx2+f16c", 1, { avx2_f64_to32, NULL, avx2_f16_to32, avx2_bf16_to32 },
	  { NULL, avx2_to_f16, avx2_to_bf16, avx2_to_bf16c } },
	{ "avx512", 1, { avx512_f64_to32, NULL, avx512_f16_to32, avx512_bf16_to32 },
	  { NULL, avx512_to_f16, avx512_to_bf16, avx512_to_bf16c } },
#endif
};
#define NTIERS ((int)(sizeof(tiers) / sizeof(tiers[0])))

/* Whether this CPU (and OS) runs tier t. */
static int tier_usable(int t)
{
#ifdef CV_X86
	unsigned a, b, c, d;
	int f16c;

	if (t == 0)
		return 1;
	__builtin_cpu_init();
	f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
	if (t == 1)
		return f16c && __builtin_cpu_supports("avx2");
	return t == 2 && f16c && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("avx512f") &&
	       __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
#else
	return t == 0;
#endif
}

/* The best tier, detected once (a benign race: every thread computes the
 * same value). */
static int best_tier(void)
{
	static int best = -1;
	int t = __atomic_load_n(&best, __ATOMIC_RELAXED);

	if (t < 0) {
		for (t = NTIERS - 1; t > 0 && !tier_usable(t); t--)
			;
		__atomic_store_n(&best, t, __ATOMIC_RELAXED);
	}
	return t;
}

static const char *kernel_name(int t, enum ckpt_dtype from, enum ckpt_dtype to)
{
	if (from == to)
		return src_index(from) >= 0 ? "memcpy" : "unsupported";
	if (dst_index(from, to) < 0)
		return "unsupported";
	if (!tiers[t].f16_vector && (from == CKPT_DT_F16 || to == CKPT_DT_F16))
		return "scalar";
	return tiers[t].name;
}

const char *ckpt_convert_kernel(enum ckpt_dtype from, enum ckpt_dtype to)
{
	return kernel_name(best_tier(), from, to);
}

static void fast_run(const struct tier *tr, int si, int ti, const unsigned char *s, unsigned char *d, size_t n)
{
	static const unsigned char ssz[] = { 8, 4, 2, 2 }, dsz[] = { 4, 2, 2, 2 };
	uint32_t tmp[BLK];
	size_t nb = n / BLK;

	for (size_t b = 0; b < nb; b++, s += BLK * ssz[si], d += BLK * dsz[ti]) {
		if (ti == T_F32) {
			tr->to32[si](s, d);
		} else if (si == S_F32) {
			tr->from32[ti](s, d);
		} else {
			tr->to32[si](s, (unsigned char *)tmp);
			tr->from32[ti]((const unsigned char *)tmp, d);
		}
	}
	ref_run(si, ti, s, d, n % BLK);
}

static const char *convert_with(int t, enum ckpt_dtype from, enum ckpt_dtype to, const void *src, void *dst,
				size_t n)
{
	int ti = dst_index(from, to);

	if (from == to && src_index(from) >= 0)
		memcpy(dst, src, n * ckpt_dtype_size(from));
	else if (ti >= 0)
		fast_run(&tiers[t], src_index(from), ti, src, dst, n);
	else
		return NULL;
	return kernel_name(t, from, to);
}

static ckpt_convert_offload_fn *offload_fn;
static void *offload_ctx;
static size_t offload_min;
static unsigned long long offloaded;

void ckpt_convert_set_offload(ckpt_convert_offload_fn *fn, void *ctx, size_t min_elems)
{
	offload_fn = fn;
	offload_ctx = ctx;
	offload_min = min_elems ? min_elems : 1;
}

size_t ckpt_convert_batch(void)
{
	return offload_fn && offload_min > 65536 ? offload_min : 65536;
}

unsigned long long ckpt_convert_offloaded_bytes(void)
{
	return __atomic_load_n(&offloaded, __ATOMIC_RELAXED);
}

void ckpt_convert(enum ckpt_dtype from, enum ckpt_dtype to, const void *src, void *dst, size_t n)
{
	if (offload_fn && n >= offload_min && from != to && ckpt_convert_supported(from, to) &&
	    !offload_fn(offload_ctx, from, to, src, dst, n)) {
		__atomic_fetch_add(&offloaded, (unsigned long long)n * ckpt_dtype_size(to), __ATOMIC_RELAXED);
		return;
	}
	convert_with(best_tier(), from, to, src, dst, n);
}

const char *ckpt__convert_tier(int tier, enum ckpt_dtype from, enum ckpt_dtype to, const void *src, void *dst,
			       size_t n)
{
	if (tier < 0 || tier >= NTIERS || !tier_usable(tier))
		return NULL;
	return convert_with(tier, from, to, src, dst, n);
}

/* test-convert.c - dtype conversion (src/convert.c) against real torch.
 *
 * For every pair and for the reference, the best kernel and every kernel
 * tier this CPU runs:
 *   - the edge-case table of convert_vectors.h (torch's outputs) matches;
 *   - the hash of the output for CV_RANDOM_N pseudo-random inputs matches
 *     torch's (inputs from cv_rand/cv_shape, mirrored from
 *     gen_convert_vectors.py);
 *   - the fast kernels agree with the reference for n = 0..100 and large n,
 *     at every misalignment of src and dst, without writing past dst + n.
 * With CKPTFS_SLOW_TESTS=1, F32->BF16 and F32->F16 are also checked over
 * all 2^32 inputs, fast against reference.  Prints F32->BF16 throughput as
 * a comment. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../src/convert.h"
#include "convert_vectors.h"
#include "tap.h"

#define GOLDEN 0x9E3779B97F4A7C15ull
#define MAXTIER 8

/* ---- The generator and hash of gen_convert_vectors.py ---- */

static uint64_t mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* r_i = mix(seed + (i + 1) * GOLDEN). */
static uint64_t cv_rand(uint64_t seed, uint64_t i)
{
	return mix(seed + (i + 1) * GOLDEN);
}

/* Source bit pattern i of the random set: see cv_shape() in the generator. */
static uint64_t cv_shape(enum ckpt_dtype src, uint64_t r, uint64_t i)
{
	uint64_t sel = r & 7, u, e16, e;

	if (src == CKPT_DT_F16 || src == CKPT_DT_BF16)
		return i < 65536 ? i : r >> 48;
	if (src == CKPT_DT_F32) {
		u = r >> 32;
		e16 = (u & 0x807FFFFF) | ((96 + ((r >> 8) & 63)) << 23);
		switch (sel) {
		case 3: return (u & 0xFFFF0000) | 0x8000;
		case 4: return (u & 0xFFFFE000) | 0x1000;
		case 5: return e16;
		case 6: return (e16 & 0xFFFFE000) | 0x1000;
		case 7: return u & 0xFFFF0000;
		default: return u;
		}
	}
	if (sel < 2)
		return r;
	e = 860 + ((r >> 52) & 0x1FF);
	u = (r & 0x800FFFFFFFFFFFFFull) | (e << 52);
	if (sel == 4 || sel == 5)
		return u & ~0x1FFFFFFFull;
	if (sel == 6)
		return (u & ~0x1FFFFFFFull) | 0x10000000;
	return u;
}

static void put(void *p, size_t size, uint64_t v)
{
	unsigned char *b = p;
	for (size_t k = 0; k < size; k++)
		b[k] = (unsigned char)(v >> (8 * k));
}

static uint64_t get(const void *p, size_t size)
{
	const unsigned char *b = p;
	uint64_t v = 0;
	for (size_t k = 0; k < size; k++)
		v |= (uint64_t)b[k] << (8 * k);
	return v;
}

static void fill_random(enum ckpt_dtype src, uint64_t seed, void *buf, size_t n)
{
	size_t ss = ckpt_dtype_size(src);
	for (size_t i = 0; i < n; i++)
		put((unsigned char *)buf + i * ss, ss, cv_shape(src, cv_rand(seed, i), i));
}

/* sum_i mix(w_i + (i + 1) * GOLDEN) over little-endian 64-bit words. */
static uint64_t cv_hash(const void *buf, size_t bytes)
{
	uint64_t h = 0;
	for (size_t i = 0; i < bytes / 8; i++)
		h += mix(get((const unsigned char *)buf + 8 * i, 8) + (i + 1) * GOLDEN);
	return h;
}

/* ---- Running a converter: -1 = reference, -2 = best, else a tier ---- */

static const char *run(int which, enum ckpt_dtype from, enum ckpt_dtype to, const void *src, void *dst, size_t n)
{
	if (which == -1) {
		ckpt_convert_ref(from, to, src, dst, n);
		return "reference";
	}
	if (which == -2) {
		ckpt_convert(from, to, src, dst, n);
		return ckpt_convert_kernel(from, to);
	}
	return ckpt__convert_tier(which, from, to, src, dst, n);
}

static char label[64], dummy[8];

static const char *who(int which, enum ckpt_dtype from, enum ckpt_dtype to)
{
	if (which == -1)
		return "reference";
	if (which == -2)
		snprintf(label, sizeof(label), "ckpt_convert (%s)", ckpt_convert_kernel(from, to));
	else
		snprintf(label, sizeof(label), "tier %d (%s)", which, ckpt__convert_tier(which, from, to, "", dummy, 0));
	return label;
}

/* The edge table, placed after a zero prefix that makes the total a multiple
 * of 256 elements, so every edge case goes through the blocked kernels. */
static void test_edges(const struct cv_pair *p, int which)
{
	size_t ss = ckpt_dtype_size(p->from), ds = ckpt_dtype_size(p->to);
	size_t pad = (256 - p->nedges % 256) % 256, n = pad + p->nedges, bad = 0;
	unsigned char *src = calloc(n, ss), *dst = calloc(n, ds);

	for (size_t i = 0; i < p->nedges; i++)
		put(src + (pad + i) * ss, ss, p->edges[i].in);
	run(which, p->from, p->to, src, dst, n);
	for (size_t i = 0; i < p->nedges; i++) {
		uint64_t got = get(dst + (pad + i) * ds, ds);
		if (got != p->edges[i].out && bad++ < 5)
			printf("#   %s->%s: in 0x%llx: got 0x%llx, torch 0x%llx\n", ckpt_dtype_name(p->from),
			       ckpt_dtype_name(p->to), (unsigned long long)p->edges[i].in, (unsigned long long)got,
			       (unsigned long long)p->edges[i].out);
	}
	ok(bad == 0, "%s->%s edge table (%zu cases), %s: %zu wrong", ckpt_dtype_st_code(p->from),
	   ckpt_dtype_st_code(p->to), p->nedges, who(which, p->from, p->to), bad);
	free(src);
	free(dst);
}

static void test_hash(const struct cv_pair *p, int which, const void *src, unsigned char *dst)
{
	uint64_t h;

	run(which, p->from, p->to, src, dst, CV_RANDOM_N);
	h = cv_hash(dst, CV_RANDOM_N * ckpt_dtype_size(p->to));
	ok(h == p->hash, "%s->%s random set hash, %s: 0x%016llx (torch 0x%016llx)", ckpt_dtype_st_code(p->from),
	   ckpt_dtype_st_code(p->to), who(which, p->from, p->to), (unsigned long long)h, (unsigned long long)p->hash);
}

/* Fast (which) against reference at every length 0..100, some large ones,
 * and every src/dst misalignment, with guard bytes after dst. */
static void test_lengths(enum ckpt_dtype from, enum ckpt_dtype to, int which, const unsigned char *pool)
{
	static const size_t big[] = { 255, 256, 257, 511, 4096 + 17, 100003 };
	size_t ss = ckpt_dtype_size(from), ds = ckpt_dtype_size(to), bad = 0, cases = 0;
	size_t maxn = 100003 + 64;
	unsigned char *src = malloc(maxn * ss + 64), *a = malloc(maxn * ds + 64), *b = malloc(maxn * ds + 64);

	for (size_t k = 0; k < 101 + sizeof(big) / sizeof(big[0]); k++) {
		size_t n = k <= 100 ? k : big[k - 101];
		for (size_t so = 0; so < 8; so++) {
			for (size_t dof = 0; dof < 8; dof += (n > 100 ? 3 : 1)) {
				memcpy(src + so, pool + (k * 13 + so) * ss, n * ss);
				memset(a, 0xA5, n * ds + dof + 16);
				memset(b, 0xA5, n * ds + dof + 16);
				ckpt_convert_ref(from, to, src + so, a + dof, n);
				run(which, from, to, src + so, b + dof, n);
				cases++;
				if (memcmp(a, b, n * ds + dof + 16) != 0 && bad++ < 3)
					printf("#   n=%zu src+%zu dst+%zu differs\n", n, so, dof);
			}
		}
	}
	ok(bad == 0, "%s->%s %s agrees with the reference: %zu lengths/alignments, %zu differ",
	   ckpt_dtype_st_code(from), ckpt_dtype_st_code(to), who(which, from, to), cases, bad);
	free(src);
	free(a);
	free(b);
}

/* All 2^32 F32 inputs, in chunks: fast (every tier) against reference. */
static void test_exhaustive(enum ckpt_dtype to)
{
	enum { CH = 1 << 16 };
	static uint32_t in[CH];
	static uint16_t ref[CH], fast[CH];
	size_t bad[MAXTIER] = { 0 };
	int ntier = 0;

	while (ntier < MAXTIER && ckpt__convert_tier(ntier, CKPT_DT_F32, to, in, fast, 0))
		ntier++;
	for (uint64_t base = 0; base < (1ull << 32); base += CH) {
		for (uint32_t i = 0; i < CH; i++)
			in[i] = (uint32_t)(base + i);
		ckpt_convert_ref(CKPT_DT_F32, to, in, ref, CH);
		for (int t = 0; t < ntier; t++) {
			ckpt__convert_tier(t, CKPT_DT_F32, to, in, fast, CH);
			if (memcmp(ref, fast, sizeof(ref)) != 0)
				bad[t]++;
		}
	}
	for (int t = 0; t < ntier; t++)
		ok(bad[t] == 0, "F32->%s all 2^32 inputs, %s: %zu chunks differ", ckpt_dtype_st_code(to),
		   who(t, CKPT_DT_F32, to), bad[t]);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* F32 -> BF16 input GB/s on a 256 KiB (cache-resident) source. */
static double throughput(int which)
{
	enum { N = 65536 };
	static float in[N];
	static uint16_t out[N];
	double t0 = now(), t = 0;
	size_t reps = 0;

	fill_random(CKPT_DT_F32, 42, in, N);
	while ((t = now() - t0) < 0.2) {
		for (int k = 0; k < 16; k++)
			run(which, CKPT_DT_F32, CKPT_DT_BF16, in, out, N);
		reps += 16;
	}
	return (double)reps * sizeof(in) / t / 1e9;
}

int main(void)
{
	size_t npairs = sizeof(cv_pairs) / sizeof(cv_pairs[0]);
	int ntier = 0;
	const char *slow = getenv("CKPTFS_SLOW_TESTS");

	while (ntier < MAXTIER && ckpt__convert_tier(ntier, CKPT_DT_F32, CKPT_DT_BF16, "", dummy, 0))
		ntier++;
	printf("# kernel tiers on this CPU: %d; best F32->BF16: %s\n", ntier,
	       ckpt_convert_kernel(CKPT_DT_F32, CKPT_DT_BF16));

	/* The pair list and the kernel names. */
	ok(ckpt_convert_supported(CKPT_DT_F32, CKPT_DT_BF16) && ckpt_convert_supported(CKPT_DT_F64, CKPT_DT_F64) &&
		   ckpt_convert_supported(CKPT_DT_BF16, CKPT_DT_BF16) && !ckpt_convert_supported(CKPT_DT_F32, CKPT_DT_F64) &&
		   !ckpt_convert_supported(CKPT_DT_I32, CKPT_DT_F32) && !ckpt_convert_supported(CKPT_DT_F32, CKPT_DT_I8) &&
		   !ckpt_convert_supported(CKPT_DT_I64, CKPT_DT_I64) &&
		   !ckpt_convert_supported(CKPT_DT_F8_E4M3FN, CKPT_DT_BF16),
	   "ckpt_convert_supported");
	ok(strcmp(ckpt_convert_kernel(CKPT_DT_F32, CKPT_DT_F32), "memcpy") == 0 &&
		   strcmp(ckpt_convert_kernel(CKPT_DT_I8, CKPT_DT_F32), "unsupported") == 0,
	   "ckpt_convert_kernel: memcpy and unsupported");
	for (size_t p = 0; p < npairs; p++)
		if (!ckpt_convert_supported(cv_pairs[p].from, cv_pairs[p].to))
			ok(0, "pair %zu supported", p);

	/* Identity copies and an unsupported pair, which must write nothing. */
	{
		unsigned char s[24], d[24];
		for (int k = 0; k < 24; k++)
			s[k] = (unsigned char)(k * 37 + 1);
		memset(d, 0, sizeof(d));
		ckpt_convert(CKPT_DT_F64, CKPT_DT_F64, s, d, 3);
		int good = memcmp(s, d, 24) == 0;
		memset(d, 0, sizeof(d));
		ckpt_convert(CKPT_DT_BF16, CKPT_DT_BF16, s + 1, d + 3, 5);
		good = good && memcmp(s + 1, d + 3, 10) == 0 && d[13] == 0;
		memset(d, 0, sizeof(d));
		ckpt_convert(CKPT_DT_I32, CKPT_DT_F32, s, d, 4);
		ckpt_convert_ref(CKPT_DT_F32, CKPT_DT_I32, s, d, 4);
		ok(good && memcmp(d, (unsigned char[24]){ 0 }, 24) == 0, "identity copies; unsupported pairs write nothing");
	}

	for (size_t p = 0; p < npairs; p++) {
		const struct cv_pair *cp = &cv_pairs[p];
		size_t ss = ckpt_dtype_size(cp->from), ds = ckpt_dtype_size(cp->to);
		unsigned char *src = malloc(CV_RANDOM_N * ss), *dst = malloc(CV_RANDOM_N * ds);

		test_edges(cp, -1);
		test_edges(cp, -2);
		for (int t = 0; t < ntier; t++)
			test_edges(cp, t);
		fill_random(cp->from, CV_SEED_BASE + p, src, CV_RANDOM_N);
		test_hash(cp, -1, src, dst);
		test_hash(cp, -2, src, dst);
		for (int t = 0; t < ntier; t++)
			test_hash(cp, t, src, dst);
		test_lengths(cp->from, cp->to, -2, src);
		for (int t = 0; t < ntier; t++)
			test_lengths(cp->from, cp->to, t, src);
		free(src);
		free(dst);
	}

	if (slow && strcmp(slow, "1") == 0) {
		test_exhaustive(CKPT_DT_BF16);
		test_exhaustive(CKPT_DT_F16);
	} else {
		printf("# skipped exhaustive 2^32 checks (set CKPTFS_SLOW_TESTS=1)\n");
	}

	printf("# F32->BF16, 256 KiB source: %.1f GB/s in (ckpt_convert, %s), %.1f GB/s (reference)\n",
	       throughput(-2), ckpt_convert_kernel(CKPT_DT_F32, CKPT_DT_BF16), throughput(-1));
	return tap_done();
}

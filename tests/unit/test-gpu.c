/* test-gpu.c - the conversion offload hook (convert.c) and the GPU path
 * (gpu.h).  TAP.
 *
 * Everywhere: ckpt_convert hands runs of at least the offload's minimum to
 * it and no shorter ones, takes its output, falls back to the CPU kernels
 * when it declines, and never offloads identity copies; ckpt_convert_batch
 * follows the minimum.
 *
 * With a CUDA build on a machine with a usable NVIDIA GPU: every pair
 * ckpt_convert supports, over every 16-bit pattern (for 16-bit sources),
 * edge values and 3 million pseudo-random patterns (several staging
 * chunks, a ragged last one), is bit-identical to the scalar reference,
 * which test-convert checks against torch.  Without one those checks are
 * skipped (TAP "# SKIP"), and the build without CUDA must say so. */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../src/convert.h"
#include "../../src/gpu.h"
#include "tap.h"

static int calls, declines;
static size_t last_n;

static int fake_offload(void *ctx, enum ckpt_dtype from, enum ckpt_dtype to, const void *src,
			void *dst, size_t n)
{
	int *decline = ctx;
	calls++;
	last_n = n;
	if (*decline) {
		declines++;
		return -1;
	}
	ckpt_convert_ref(from, to, src, dst, n);
	((uint16_t *)dst)[0] ^= 1;  /* mark: the caller must return the offload's bytes */
	return 0;
}

static void test_hook(void)
{
	enum { N = 1 << 16 };
	float *in = malloc(N * sizeof(float));
	uint16_t *a = malloc(N * 2), *b = malloc(N * 2);
	int decline = 0;

	for (int i = 0; i < N; i++)
		in[i] = (float)i * 0.37f - 1000.0f;
	ckpt_convert_ref(CKPT_DT_F32, CKPT_DT_BF16, in, a, N);
	ok(ckpt_convert_batch() == 65536, "no offload: batches of 65536 elements");
	ckpt_convert_set_offload(fake_offload, &decline, 1000);
	ok(ckpt_convert_batch() == 65536, "an offload minimum below 65536 keeps the batch");
	ckpt_convert(CKPT_DT_F32, CKPT_DT_BF16, in, b, 999);
	ok(calls == 0 && !memcmp(a, b, 999 * 2), "a run under the minimum stays on the CPU");
	ckpt_convert(CKPT_DT_F32, CKPT_DT_BF16, in, b, N);
	ok(calls == 1 && last_n == N && b[0] == (a[0] ^ 1) && !memcmp(a + 1, b + 1, (N - 1) * 2) &&
	   ckpt_convert_offloaded_bytes() == N * 2, "a run at or over it is offloaded, its bytes returned");
	ckpt_convert(CKPT_DT_F32, CKPT_DT_F32, in, b, N / 2);
	ok(calls == 1 && !memcmp(in, b, N * 2), "identity copies are never offloaded");
	decline = 1;
	ckpt_convert(CKPT_DT_F32, CKPT_DT_BF16, in, b, N);
	ok(calls == 2 && declines == 1 && !memcmp(a, b, N * 2),
	   "a declined run is converted by the CPU kernels");
	ckpt_convert_set_offload(fake_offload, &decline, 1u << 20);
	ok(ckpt_convert_batch() == 1u << 20, "a minimum over 65536 sets the batch");
	ckpt_convert_set_offload(NULL, NULL, 0);
	ok(ckpt_convert_batch() == 65536, "offload removed");
	free(in);
	free(a);
	free(b);
}

static uint64_t xs(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Random bit patterns with many specials: exponents all-ones or zero. */
static void fill(enum ckpt_dtype dt, void *buf, size_t n, uint64_t seed)
{
	size_t es = ckpt_dtype_size(dt);
	for (size_t i = 0; i < n; i++) {
		uint64_t r = xs(&seed), v = r;
		switch (r >> 61) {
		case 0: v = es == 8 ? (r | 0x7FF0000000000000ull) : es == 4 ? (r | 0x7F800000u)
			    : dt == CKPT_DT_F16 ? (r | 0x7C00u) : (r | 0x7F80u); break;  /* inf/NaN */
		case 1: v = es == 8 ? (r & 0x800FFFFFFFFFFFFFull) : es == 4 ? (r & 0x807FFFFFu)
			    : dt == CKPT_DT_F16 ? (r & 0x83FFu) : (r & 0x807Fu); break;  /* subnormal */
		default: break;
		}
		memcpy((uint8_t *)buf + i * es, &v, es);
	}
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void test_gpu(void)
{
	static const enum ckpt_dtype dts[] = { CKPT_DT_F64, CKPT_DT_F32, CKPT_DT_F16, CKPT_DT_BF16 };
	struct ckpt_gpu *g;
	struct ckpt_err e = { 0 };
	int rc = ckpt_gpu_open(&g, 1u << 20, &e);

#ifndef HAVE_CUDA
	ok(rc == -ENOTSUP && strstr(e.msg, "without CUDA"), "built without CUDA: the GPU path says so (%s)",
	   e.msg);
	printf("ok %d # SKIP GPU conversions: built without CUDA (./configure --enable-cuda)\n", ++tap_n);
	return;
#endif
	if (rc) {
		ok(rc == -ENODEV, "no usable GPU is reported as such (%s)", e.msg);
		printf("ok %d # SKIP GPU conversions: %s\n", ++tap_n, e.msg);
		return;
	}
	printf("# device: %s\n", ckpt_gpu_name(g));
	const size_t n = 3000000 + 7;
	uint8_t *in = malloc(n * 8), *want = malloc(n * 4), *got = malloc(n * 4);
	for (size_t a = 0; a < 4; a++)
		for (size_t b = 0; b < 4; b++) {
			enum ckpt_dtype from = dts[a], to = dts[b];
			if (from == to || !ckpt_convert_supported(from, to))
				continue;
			size_t m = n;
			fill(from, in, n, 0x9E3779B97F4A7C15ull + a * 4 + b);
			if (ckpt_dtype_size(from) == 2)  /* every 16-bit pattern first */
				for (uint32_t v = 0; v < 65536; v++)
					memcpy(in + v * 2, &v, 2);
			ckpt_convert_ref(from, to, in, want, m);
			memset(got, 0xA5, m * ckpt_dtype_size(to));
			double t0 = now();
			rc = ckpt_gpu_convert(g, from, to, in, got, m, &e);
			double dt = now() - t0;
			ok(rc == 0 && !memcmp(want, got, m * ckpt_dtype_size(to)),
			   "GPU %s->%s: %zu elements equal the reference (%.2f GB/s of input, transfers "
			   "included)%s%s", ckpt_dtype_name(from), ckpt_dtype_name(to), m,
			   (double)(m * ckpt_dtype_size(from)) / dt / 1e9, rc ? ": " : "", rc ? e.msg : "");
		}
	ok(ckpt_gpu_convert(g, CKPT_DT_F32, CKPT_DT_F32, in, got, 10, &e) == -EINVAL,
	   "an identity pair is refused");
	free(in);
	free(want);
	free(got);
	ckpt_gpu_close(g);
}

int main(void)
{
	test_hook();
	test_gpu();
	return tap_done();
}

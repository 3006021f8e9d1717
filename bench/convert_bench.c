/* convert_bench.c - throughput of the dtype conversion kernels (src/convert.c).
 *
 * For F32->BF16, F32->F16 and BF16->F32, converts a buffer (256 MiB of input
 * by default, so DRAM-bound) with the fast kernel (ckpt_convert) and the
 * scalar reference (ckpt_convert_ref), on one thread and on all online
 * cores (each thread a contiguous slice), and prints the GB/s of input side
 * by side; the best of a few runs.  Not a test.
 *
 *   convert_bench [-s SIZE] [-t THREADS] [-r RUNS]
 *
 * SIZE is the input size in MiB, or in KiB with a K suffix (-s 256K to time
 * cache-resident data).
 */
#include "config.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../src/convert.h"

struct job {
	enum ckpt_dtype from, to;
	int ref;
	const unsigned char *src;
	unsigned char *dst;
	size_t n;
};

struct slice {
	pthread_t tid;
	struct job job;
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *work(void *arg)
{
	struct job *j = arg;

	if (j->ref)
		ckpt_convert_ref(j->from, j->to, j->src, j->dst, j->n);
	else
		ckpt_convert(j->from, j->to, j->src, j->dst, j->n);
	return NULL;
}

/* Seconds for one conversion of the whole job on `threads` threads. */
static double run_once(const struct job *j, int threads, struct slice *sl)
{
	size_t ss = ckpt_dtype_size(j->from), ds = ckpt_dtype_size(j->to);
	size_t per = (j->n + (size_t)threads - 1) / (size_t)threads;
	double t0 = now();

	for (int t = 0; t < threads; t++) {
		size_t a = per * (size_t)t, b = a + per > j->n ? j->n : a + per;
		sl[t].job = *j;
		sl[t].job.src = j->src + a * ss;
		sl[t].job.dst = j->dst + a * ds;
		sl[t].job.n = b > a ? b - a : 0;
		if (threads == 1)
			work(&sl[t].job);
		else if (pthread_create(&sl[t].tid, NULL, work, &sl[t].job) != 0) {
			perror("pthread_create");
			exit(1);
		}
	}
	if (threads > 1)
		for (int t = 0; t < threads; t++)
			pthread_join(sl[t].tid, NULL);
	return now() - t0;
}

/* Input GB/s, best of `runs`. */
static double measure(const struct job *j, int threads, int runs, struct slice *sl)
{
	double best = 1e30;

	for (int r = 0; r < runs; r++) {
		double t = run_once(j, threads, sl);
		if (t < best)
			best = t;
	}
	return (double)j->n * (double)ckpt_dtype_size(j->from) / best / 1e9;
}

static void usage(void)
{
	fprintf(stderr, "usage: convert_bench [-s MIB_OF_INPUT|KIB_OF_INPUTK] [-t THREADS] [-r RUNS]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const enum ckpt_dtype pairs[][2] = {
		{ CKPT_DT_F32, CKPT_DT_BF16 }, { CKPT_DT_F32, CKPT_DT_F16 }, { CKPT_DT_BF16, CKPT_DT_F32 },
	};
	size_t kib = 256 << 10;
	char *end;
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	int threads = cores > 0 ? (int)cores : 1, runs = 5, opt;
	unsigned char *src, *dst;
	struct slice *sl;
	uint64_t x = 0x9E3779B97F4A7C15ull;

	while ((opt = getopt(argc, argv, "s:t:r:")) != -1) {
		switch (opt) {
		case 's':
			kib = strtoul(optarg, &end, 10);
			kib <<= (*end == 'K' || *end == 'k') ? 0 : 10;
			break;
		case 't': threads = atoi(optarg); break;
		case 'r': runs = atoi(optarg); break;
		default: usage();
		}
	}
	if (kib == 0 || threads < 1 || runs < 1)
		usage();

	/* Input buffer: random finite-ish values; output up to twice as big. */
	src = malloc(kib << 10);
	dst = malloc(kib << 11);
	sl = calloc((size_t)threads, sizeof(*sl));
	if (!src || !dst || !sl) {
		perror("malloc");
		return 1;
	}
	for (size_t i = 0; i < (kib << 10) / 8; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		uint64_t v = x & 0xBFFFBFFFBFFFBFFFull; /* clear a top exponent bit: few inf/NaN */
		memcpy(src + 8 * i, &v, 8);
	}
	memset(dst, 0, kib << 11);

	printf("input %zu KiB, best of %d runs, GB/s of input (output bytes not counted)\n", kib, runs);
	printf("%-11s %-10s %12s %12s %14s %14s\n", "pair", "kernel", "fast 1 thr", "ref 1 thr", "fast all thr",
	       "ref all thr");
	for (size_t p = 0; p < sizeof(pairs) / sizeof(pairs[0]); p++) {
		struct job j = { pairs[p][0], pairs[p][1], 0, src, dst, (kib << 10) / ckpt_dtype_size(pairs[p][0]) };
		struct job r = j;
		char name[32];

		r.ref = 1;
		snprintf(name, sizeof(name), "%s->%s", ckpt_dtype_st_code(j.from), ckpt_dtype_st_code(j.to));
		double f1 = measure(&j, 1, runs, sl), r1 = measure(&r, 1, runs, sl);
		double fa = measure(&j, threads, runs, sl), ra = measure(&r, threads, runs, sl);
		printf("%-11s %-10s %12.2f %12.2f %11.2f/%-2d %11.2f/%-2d\n", name, ckpt_convert_kernel(j.from, j.to), f1,
		       r1, fa, threads, ra, threads);
	}
	free(src);
	free(dst);
	free(sl);
	return 0;
}

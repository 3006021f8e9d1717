/* gpu_cuda.cu - see gpu.h.  Built by nvcc with ./configure --enable-cuda.
 *
 * Per call: the n elements are cut into chunks of at most g->chunk source
 * bytes.  Chunk k goes through stream k % 2: host memcpy into the pinned
 * input buffer, async copy to the device, the kernel, async copy back into
 * the pinned output buffer; its output is copied to dst when stream k % 2
 * is next needed (or at the end).  So the host staging of chunk k overlaps
 * the device work of chunk k - 1. */
extern "C" {
#include "config.h"
#include "convert.h"
#include "gpu.h"
}

#include <cuda_runtime.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert_ref.h"

#define NSTREAM 2
#define THREADS 256
#define MAX_BLOCKS 8192

struct ckpt_gpu {
	pthread_mutex_t mu;
	int dev;
	cudaStream_t st[NSTREAM];
	uint8_t *hin[NSTREAM], *hout[NSTREAM];  /* pinned host staging */
	uint8_t *din[NSTREAM], *dout[NSTREAM];
	size_t chunk;                           /* source bytes per chunk; out is <= 2x */
	char name[256];
	unsigned long long bytes;
};

/* One element per thread (grid-stride): the pair semantics of ref_one in
 * convert.c, with convert_ref.h's element functions. */
__global__ void convert_kernel(int from, int to, const uint8_t *__restrict__ s,
			       uint8_t *__restrict__ d, size_t n)
{
	size_t stride = (size_t)gridDim.x * blockDim.x;
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
		uint32_t f;
		switch (from) {
		case CKPT_DT_F64: f = ref_f64_f32(((const uint64_t *)s)[i]); break;
		case CKPT_DT_F32: f = ((const uint32_t *)s)[i]; break;
		case CKPT_DT_F16: f = ref_f16_f32(((const uint16_t *)s)[i]); break;
		default: f = (uint32_t)((const uint16_t *)s)[i] << 16; break;  /* BF16 */
		}
		switch (to) {
		case CKPT_DT_F32: ((uint32_t *)d)[i] = f; break;
		case CKPT_DT_F16: ((uint16_t *)d)[i] = ref_f32_f16(f); break;
		default:  /* BF16: F16's NaNs become 0x7FC0, every other NaN 0xFFFF */
			((uint16_t *)d)[i] = ref_f32_bf16(f, from == CKPT_DT_F16 ? 0x7FC0u : 0xFFFFu);
			break;
		}
	}
}

static int fail(struct ckpt_err *e, cudaError_t c, const char *what)
{
	return ckpt_err_set(e, -EIO, "CUDA: %s: %s", what, cudaGetErrorString(c));
}

extern "C" void ckpt_gpu_close(struct ckpt_gpu *g)
{
	if (!g)
		return;
	cudaSetDevice(g->dev);
	for (int s = 0; s < NSTREAM; s++) {
		if (g->st[s])
			cudaStreamDestroy(g->st[s]);
		cudaFreeHost(g->hin[s]);
		cudaFreeHost(g->hout[s]);
		cudaFree(g->din[s]);
		cudaFree(g->dout[s]);
	}
	pthread_mutex_destroy(&g->mu);
	free(g);
}

extern "C" int ckpt_gpu_open(struct ckpt_gpu **out, size_t chunk_bytes, struct ckpt_err *e)
{
	struct ckpt_gpu *g;
	cudaDeviceProp prop;
	cudaError_t c;
	int count = 0;

	*out = NULL;
	if ((c = cudaGetDeviceCount(&count)) != cudaSuccess || count == 0)
		return ckpt_err_set(e, -ENODEV, "no usable CUDA device: %s",
				    c != cudaSuccess ? cudaGetErrorString(c) : "none found");
	if (!(g = (struct ckpt_gpu *)calloc(1, sizeof(*g))))
		return ckpt_err_set(e, -ENOMEM, "out of memory");
	pthread_mutex_init(&g->mu, NULL);
	g->chunk = chunk_bytes < (1u << 20) ? (1u << 20) : chunk_bytes & ~(size_t)7;
	if ((c = cudaSetDevice(0)) != cudaSuccess || (c = cudaGetDeviceProperties(&prop, 0)) != cudaSuccess) {
		ckpt_gpu_close(g);
		return fail(e, c, "device 0");
	}
	snprintf(g->name, sizeof(g->name), "%s", prop.name);
	for (int s = 0; s < NSTREAM; s++) {
		if ((c = cudaStreamCreateWithFlags(&g->st[s], cudaStreamNonBlocking)) != cudaSuccess ||
		    (c = cudaHostAlloc((void **)&g->hin[s], g->chunk, cudaHostAllocDefault)) != cudaSuccess ||
		    (c = cudaHostAlloc((void **)&g->hout[s], 2 * g->chunk, cudaHostAllocDefault)) != cudaSuccess ||
		    (c = cudaMalloc((void **)&g->din[s], g->chunk)) != cudaSuccess ||
		    (c = cudaMalloc((void **)&g->dout[s], 2 * g->chunk)) != cudaSuccess) {
			ckpt_gpu_close(g);
			return fail(e, c, "allocating the staging buffers");
		}
	}
	*out = g;
	return 0;
}

extern "C" const char *ckpt_gpu_name(const struct ckpt_gpu *g)
{
	return g->name;
}

extern "C" uint64_t ckpt_gpu_bytes(struct ckpt_gpu *g)
{
	return __atomic_load_n(&g->bytes, __ATOMIC_RELAXED);
}

extern "C" int ckpt_gpu_convert(struct ckpt_gpu *g, enum ckpt_dtype from, enum ckpt_dtype to,
				const void *src, void *dst, size_t n, struct ckpt_err *e)
{
	struct { uint8_t *dst; size_t n; } pend[NSTREAM] = {};
	size_t ein = ckpt_dtype_size(from), eout = ckpt_dtype_size(to);
	const uint8_t *sp = (const uint8_t *)src;
	uint8_t *dp = (uint8_t *)dst;
	cudaError_t c = cudaSuccess;
	const char *what = "";

	if (from == to || !ckpt_convert_supported(from, to))
		return ckpt_err_set(e, -EINVAL, "no GPU conversion from %s to %s", ckpt_dtype_name(from),
				    ckpt_dtype_name(to));
	size_t per = g->chunk / ein;
	pthread_mutex_lock(&g->mu);
	if ((c = cudaSetDevice(0)) != cudaSuccess)
		what = "cudaSetDevice";
	for (size_t k = 0, done = 0; c == cudaSuccess && done < n; k++) {
		int s = (int)(k % NSTREAM);
		if (pend[s].n) {
			if ((c = cudaStreamSynchronize(g->st[s])) != cudaSuccess) {
				what = "stream";
				break;
			}
			memcpy(pend[s].dst, g->hout[s], pend[s].n * eout);
			pend[s].n = 0;
		}
		size_t m = n - done < per ? n - done : per;
		size_t blocks = (m + THREADS - 1) / THREADS;
		memcpy(g->hin[s], sp + done * ein, m * ein);
		if ((c = cudaMemcpyAsync(g->din[s], g->hin[s], m * ein, cudaMemcpyHostToDevice,
					 g->st[s])) != cudaSuccess) {
			what = "copy to the device";
			break;
		}
		convert_kernel<<<(unsigned)(blocks < MAX_BLOCKS ? blocks : MAX_BLOCKS), THREADS, 0, g->st[s]>>>(
			(int)from, (int)to, g->din[s], g->dout[s], m);
		if ((c = cudaGetLastError()) != cudaSuccess) {
			what = "kernel launch";
			break;
		}
		if ((c = cudaMemcpyAsync(g->hout[s], g->dout[s], m * eout, cudaMemcpyDeviceToHost,
					 g->st[s])) != cudaSuccess) {
			what = "copy from the device";
			break;
		}
		pend[s].dst = dp + done * eout;
		pend[s].n = m;
		done += m;
	}
	for (int s = 0; s < NSTREAM; s++) {  /* drain, also after an error */
		cudaError_t cs = cudaStreamSynchronize(g->st[s]);
		if (cs != cudaSuccess && c == cudaSuccess) {
			c = cs;
			what = "stream";
		}
		if (c == cudaSuccess && pend[s].n)
			memcpy(pend[s].dst, g->hout[s], pend[s].n * eout);
	}
	pthread_mutex_unlock(&g->mu);
	if (c != cudaSuccess)
		return fail(e, c, what);
	__atomic_fetch_add(&g->bytes, (unsigned long long)n * eout, __ATOMIC_RELAXED);
	return 0;
}

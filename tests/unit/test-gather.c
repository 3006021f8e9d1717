/* test-gather.c - unit tests for chunk assembly (src/gather.c, src/chunkio.c):
 * synthetic tensors split into chunks the way DTensor, ShardedTensor and
 * Megatron write them, stored with C, transposed or padded strides, big-endian
 * or zstd-compressed, are read back over random byte ranges and compared with
 * an independently computed C-order image. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "../../src/catalog.h"
#include "../../src/chunkio.h"
#include "../../src/gather.h"
#include "../../src/serve.h"
#include "tap.h"
#include "torchsave.h"

enum store { C_ORDER, TRANSPOSED, PADDED };

struct cspec {
	int64_t off[4], size[4];
	enum store store;
	int zstd, big;
};

static uint32_t value_at(uint64_t g)
{
	return (uint32_t)(g * 2654435761u + 12345u);
}

static void put_elem(uint8_t *p, uint32_t v, size_t es, int big)
{
	for (size_t i = 0; i < es; i++)
		p[big ? es - 1 - i : i] = (uint8_t)(v >> (8 * i));
}

/* Builds the item for one chunk and appends it to the data file image. */
static void add_item(struct buf *file, const int64_t *shape, int ndim, const struct cspec *cs,
		     enum ckpt_dtype dt, struct ckpt_chunk *ch)
{
	size_t es = ckpt_dtype_size(dt);
	int64_t stride[4], numel = 1, offset = 0, storage_n;
	for (int d = 0; d < ndim; d++)
		numel *= cs->size[d];
	if (cs->store == TRANSPOSED && ndim == 2) {
		stride[0] = 1;
		stride[1] = cs->size[0];
		storage_n = numel;
	} else {
		int64_t s = 1, pad = cs->store == PADDED ? 2 : 0;
		for (int d = ndim - 1; d >= 0; d--) {
			stride[d] = s;
			s *= cs->size[d] + (d == ndim - 1 ? pad : 0);
		}
		offset = cs->store == PADDED ? 3 : 0;
		storage_n = offset + s + 1;
	}
	uint8_t *storage = calloc((size_t)storage_n ? (size_t)storage_n : 1, es);
	int64_t idx[4] = { 0 };
	for (int64_t k = 0; k < numel; k++) {
		int64_t rem = k, g = 0, gs = 1, so = offset;
		for (int d = ndim - 1; d >= 0; d--) {
			idx[d] = rem % cs->size[d];
			rem /= cs->size[d];
		}
		for (int d = ndim - 1; d >= 0; d--) {
			g += (cs->off[d] + idx[d]) * gs;
			gs *= shape[d];
			so += idx[d] * stride[d];
		}
		put_elem(storage + so * (int64_t)es, value_at((uint64_t)g), es, cs->big);
	}
	struct buf item = { 0 };
	torch_item(&item, "archive", dt == CKPT_DT_I16 ? "ShortStorage" : "IntStorage", storage_n,
		   offset, ndim, cs->size, stride, storage, (size_t)storage_n * es,
		   cs->big ? "big" : "little");
	free(storage);
	memset(ch, 0, sizeof(*ch));
	memcpy(ch->off, cs->off, sizeof(cs->off));
	memcpy(ch->size, cs->size, sizeof(cs->size));
	ch->numel = (uint64_t)numel;
	ch->item_off = file->n;
	if (cs->zstd) {
		/* two frames, as the pyzstd fallback writer produces */
		size_t half = item.n / 2, cap = ZSTD_compressBound(item.n) + 64;
		uint8_t *z = malloc(cap * 2);
		size_t a = ZSTD_compress(z, cap, item.p, half, 3);
		size_t b = ZSTD_compress(z + a, cap, item.p + half, item.n - half, 3);
		put(file, z, a + b);
		ch->item_len = a + b;
		ch->zstd = 1;
		free(z);
	} else {
		put(file, item.p, item.n);
		ch->item_len = item.n;
	}
	free(item.p);
}

/* Random boxes of t, and a concatenation of two, served as one output tensor,
 * against the same boxes cut from the expected image. */
static void check_boxes(struct ckpt_chunkio *io, struct ckpt_tensor *t, const uint8_t *want,
			const char *name)
{
	size_t es = ckpt_dtype_size(t->dtype);
	unsigned seed = 777;
	int bad = 0;

	for (int r = 0; r < 40 && !bad && t->ndim > 0; r++) {
		struct ckpt_view view = { 0 };
		int64_t lo[2][4], hi[2][4], oshape[1];
		uint64_t total = 0;
		for (int b = 0; b < 2; b++)
			for (int d = 0; d < t->ndim; d++) {
				seed = seed * 1103515245u + 12345u;
				lo[b][d] = (int64_t)((seed >> 8) % (uint64_t)t->shape[d]);
				seed = seed * 1103515245u + 12345u;
				hi[b][d] = lo[b][d] + 1 + (int64_t)((seed >> 8) % (uint64_t)(t->shape[d] - lo[b][d]));
			}
		uint8_t *exp = malloc(t->nbytes * 2 + 16), *got = malloc(t->nbytes * 2 + 16);
		for (int b = 0; b < 2; b++) {
			int64_t idx[4] = { 0 };
			for (int d = 0; d < t->ndim; d++)
				idx[d] = lo[b][d];
			for (;;) {
				uint64_t g = 0;
				for (int d = 0; d < t->ndim; d++)
					g = g * (uint64_t)t->shape[d] + (uint64_t)idx[d];
				memcpy(exp + total * es, want + g * es, es);
				total++;
				int d = t->ndim - 1;
				while (d >= 0 && ++idx[d] == hi[b][d]) {
					idx[d] = lo[b][d];
					d--;
				}
				if (d < 0)
					break;
			}
		}
		oshape[0] = (int64_t)total;
		struct ckpt_vtensor *vt = ckpt_view_add(&view, "box", t->dtype, 1, oshape);
		struct ckpt_err e = { 0 };
		if (ckpt_vtensor_add_box(vt, t, lo[0], hi[0]) || ckpt_vtensor_add_box(vt, t, lo[1], hi[1]) ||
		    ckpt_serve(io, vt, 0, vt->nbytes, got, &e) || memcmp(got, exp, vt->nbytes) != 0) {
			bad = 1;
			printf("# box mismatch in round %d (%s)\n", r, e.msg);
		}
		/* an unaligned middle range */
		uint64_t off = vt->nbytes / 3, len = vt->nbytes / 2;
		if (!bad && (ckpt_serve(io, vt, off, len, got, &e) || memcmp(got, exp + off, len) != 0)) {
			bad = 1;
			printf("# box range mismatch in round %d (%s)\n", r, e.msg);
		}
		ckpt_view_free(&view);
		free(exp);
		free(got);
	}
	if (t->ndim > 0)
		ok(!bad, "%s: 40 random pairs of boxes served as one tensor match", name);
	if (t->ndim != 2)
		return;
	/* the element transpose of the whole tensor, over random byte ranges */
	int64_t R = t->shape[0], C = t->shape[1], tshape[2] = { C, R };
	uint8_t *exp = malloc(t->nbytes + 16), *got = malloc(t->nbytes + 16);
	for (int64_t c = 0; c < C; c++)
		for (int64_t r = 0; r < R; r++)
			memcpy(exp + (uint64_t)(c * R + r) * es, want + (uint64_t)(r * C + c) * es, es);
	struct ckpt_view view = { 0 };
	struct ckpt_vtensor *vt = ckpt_view_add(&view, "T", t->dtype, 2, tshape);
	ckpt_vtensor_add_box(vt, t, NULL, NULL);
	vt->seg[0].transpose = 1;
	bad = 0;
	for (int r = 0; r < 100 && !bad; r++) {
		struct ckpt_err e = { 0 };
		seed = seed * 1103515245u + 12345u;
		uint64_t off = (seed >> 8) % vt->nbytes;
		seed = seed * 1103515245u + 12345u;
		uint64_t len = (seed >> 8) % (vt->nbytes - off + 1);
		if (ckpt_serve(io, vt, off, len, got, &e) || memcmp(got, exp + off, len))
			bad = 1;
	}
	ok(!bad, "%s: transposed, 100 random byte ranges match", name);
	ckpt_view_free(&view);
	free(exp);
	free(got);
}

struct tjob {
	struct ckpt_chunkio *io;
	struct ckpt_vtensor *vt;
	const uint8_t *want;
	uint64_t nbytes;
	unsigned seed;
	int bad;
};

/* Random ranges from one thread (several run at once on one reader). */
static void *tread(void *arg)
{
	struct tjob *j = arg;
	uint8_t *got = malloc(j->nbytes + 16);
	for (int r = 0; r < 200 && j->nbytes; r++) {
		struct ckpt_err e = { 0 };
		uint64_t off = (uint64_t)rand_r(&j->seed) % j->nbytes;
		uint64_t len = (uint64_t)rand_r(&j->seed) % (j->nbytes - off + 1);
		if (ckpt_serve(j->io, j->vt, off, len, got, &e) || memcmp(got, j->want + off, len))
			j->bad++;
	}
	free(got);
	return NULL;
}

static void run_case(const char *name, enum ckpt_dtype dt, int ndim, const int64_t *shape,
		     const struct cspec *specs, size_t nspec, int holes)
{
	struct buf file = { 0 };
	struct ckpt_source_file sf = { .relpath = "data.distcp" };
	struct ckpt_tensor t = { .name = (char *)name, .dtype = dt, .ndim = ndim, .holes = holes };
	struct ckpt_catalog cat = { .dir = "/synthetic", .files = &sf, .nfiles = 1 };
	struct ckpt_err e = { 0 };
	char path[] = "/tmp/ckptfs-gather-XXXXXX";
	size_t es = ckpt_dtype_size(dt);
	int rc = 0;

	t.numel = 1;
	memcpy(t.shape, shape, sizeof(int64_t) * (size_t)ndim);
	for (int d = 0; d < ndim; d++)
		t.numel *= (uint64_t)shape[d];
	t.nbytes = t.numel * es;
	t.chunks = calloc(nspec, sizeof(*t.chunks));
	t.nchunks = nspec;
	cat.tensors = &t;
	cat.ntensors = 1;
	for (size_t i = 0; i < nspec; i++)
		add_item(&file, shape, ndim, &specs[i], dt, &t.chunks[i]);
	int fd = mkstemp(path);
	if (write(fd, file.p, file.n) != (ssize_t)file.n)
		rc = -EIO;
	unlink(path);
	sf.fd = fd;
	sf.size = file.n;
	for (size_t i = 0; i < nspec && !rc; i++) {
		struct ckpt_chunk *ch = &t.chunks[i];
		if (ch->zstd)
			continue;
		struct ckpt_blob blob = { .fd = fd, .base = ch->item_off, .len = ch->item_len,
					  .label = name };
		struct ckpt_item it;
		rc = ckpt_item_decode(&blob, &it, &e);
		if (!rc)
			rc = ckpt_chunk_bind(&t, ch, &it, name, &e);
	}
	if (!ok(rc == 0, "%s: items decode (%s)", name, e.msg))
		goto out;

	/* the expected image, computed independently of the chunks */
	uint8_t *want = calloc(t.nbytes ? t.nbytes : 1, 1), *got = malloc(t.nbytes + 16);
	for (uint64_t g = 0; g < t.numel; g++) {
		int covered = 0;
		uint64_t rem = g;
		int64_t idx[4];
		for (int d = ndim - 1; d >= 0; d--) {
			idx[d] = (int64_t)(rem % (uint64_t)shape[d]);
			rem /= (uint64_t)shape[d];
		}
		for (size_t i = 0; i < nspec && !covered; i++) {
			int in = 1;
			for (int d = 0; d < ndim; d++)
				in &= idx[d] >= specs[i].off[d] && idx[d] < specs[i].off[d] + specs[i].size[d];
			covered = in;
		}
		if (covered)
			put_elem(want + g * es, value_at(g), es, 0);
	}
	struct ckpt_chunkio *io;
	ckpt_chunkio_new(&io, &cat, 1 << 20);
	struct ckpt_view view = { 0 };
	struct ckpt_vtensor *vt = ckpt_view_add(&view, name, dt, ndim, shape);
	ckpt_vtensor_add_box(vt, &t, NULL, NULL);
	rc = ckpt_serve(io, vt, 0, t.nbytes, got, &e);
	ok(rc == 0 && memcmp(got, want, t.nbytes) == 0, "%s: whole tensor equals the expected image (%s)",
	   name, e.msg);
	int bad = 0;
	unsigned seed = 12345;
	for (int r = 0; r < 300 && !bad; r++) {
		seed = seed * 1103515245u + 12345u;
		uint64_t off = t.nbytes ? (seed >> 8) % t.nbytes : 0;
		seed = seed * 1103515245u + 12345u;
		uint64_t len = t.nbytes ? (seed >> 8) % (t.nbytes - off + 1) : 0;
		memset(got, 0xAB, len);
		if (ckpt_serve(io, vt, off, len, got, &e) || memcmp(got, want + off, len) != 0) {
			bad = 1;
			printf("# mismatch at off %llu len %llu\n", (unsigned long long)off,
			       (unsigned long long)len);
		}
	}
	ok(!bad, "%s: 300 random unaligned byte ranges match", name);
	ckpt_err_clear(&e);
	ok(ckpt_serve(io, vt, t.nbytes, 1, got, &e) == -EINVAL, "%s: reading past the end is refused",
	   name);
	check_boxes(io, &t, want, name);
	/* several threads on one reader whose item cache holds nothing: items
	 * (zstd, strided) are loaded, by one thread at a time each, and dropped
	 * over and over while others wait for or read them */
	struct ckpt_chunkio *io1;
	ckpt_chunkio_new(&io1, &cat, 1);
	struct tjob jb[4];
	pthread_t th[4];
	int tbad = 0;
	for (int i = 0; i < 4; i++) {
		jb[i] = (struct tjob){ io1, vt, want, t.nbytes, 777u + (unsigned)i, 0 };
		pthread_create(&th[i], NULL, tread, &jb[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		tbad += jb[i].bad;
	}
	ok(!tbad, "%s: 4 threads x 200 random ranges through a 1-byte item cache match", name);
	ckpt_chunkio_free(io1);
	ckpt_view_free(&view);
	ckpt_chunkio_free(io);
	free(want);
	free(got);
out:
	close(fd);
	free(t.chunks);
	free(file.p);
}

/* A tiny zstd item that expands far beyond what its chunk can hold is
 * refused before it fills memory. */
static void check_zstd_bomb(void)
{
	size_t big = 64u << 20;
	uint8_t *zeros = calloc(1, big), *z = malloc(ZSTD_compressBound(big));
	size_t zn = ZSTD_compress(z, ZSTD_compressBound(big), zeros, big, 3);
	char path[] = "/tmp/ckptfs-bomb-XXXXXX";
	int fd = mkstemp(path);
	unlink(path);
	ok(write(fd, z, zn) == (ssize_t)zn, "bomb: %zu compressed bytes for 64 MiB", zn);
	struct ckpt_source_file sf = { .relpath = "bomb.distcp", .fd = fd, .size = zn };
	struct ckpt_chunk ch = { .off = { 0 }, .size = { 4 }, .numel = 4, .item_len = zn, .zstd = 1 };
	struct ckpt_tensor t = { .name = "bomb", .dtype = CKPT_DT_I32, .ndim = 1, .shape = { 4 },
				 .numel = 4, .nbytes = 16, .chunks = &ch, .nchunks = 1 };
	struct ckpt_catalog cat = { .dir = "/synthetic", .files = &sf, .nfiles = 1, .tensors = &t,
				    .ntensors = 1 };
	struct ckpt_chunkio *io;
	struct ckpt_view view = { 0 };
	struct ckpt_err e = { 0 };
	uint8_t got[16];
	ckpt_chunkio_new(&io, &cat, 1 << 20);
	struct ckpt_vtensor *vt = ckpt_view_add(&view, "bomb", CKPT_DT_I32, 1, t.shape);
	ckpt_vtensor_add_box(vt, &t, NULL, NULL);
	int rc = ckpt_serve(io, vt, 0, 16, got, &e);
	ok(rc == -EFBIG && strstr(e.msg, "decompression bomb"), "zstd bomb refused (%s)", e.msg);
	ckpt_view_free(&view);
	ckpt_chunkio_free(io);
	close(fd);
	free(zeros);
	free(z);
}

int main(void)
{
	const int64_t s54[] = { 5, 4 }, s34[] = { 3, 4 }, s68[] = { 6, 8 }, s264[] = { 2, 6, 4 };
	const int64_t s44[] = { 4, 4 }, s43[] = { 4, 3 }, s345[] = { 3, 4, 5 };

	struct cspec rows[] = { { { 0, 0 }, { 3, 4 }, C_ORDER, 0, 0 }, { { 3, 0 }, { 2, 4 }, C_ORDER, 0, 0 } };
	run_case("Shard(0) uneven rows", CKPT_DT_I32, 2, s54, rows, 2, 0);
	struct cspec cols[] = { { { 0, 2 }, { 3, 2 }, C_ORDER, 0, 0 }, { { 0, 0 }, { 3, 2 }, C_ORDER, 0, 0 } };
	run_case("Shard(1) column chunks", CKPT_DT_I32, 2, s34, cols, 2, 0);
	struct cspec grid[] = {
		{ { 0, 0 }, { 4, 5 }, C_ORDER, 0, 0 }, { { 0, 5 }, { 4, 3 }, C_ORDER, 0, 0 },
		{ { 4, 0 }, { 2, 5 }, C_ORDER, 0, 0 }, { { 4, 5 }, { 2, 3 }, C_ORDER, 0, 0 } };
	run_case("2-D mesh grid, uneven", CKPT_DT_I32, 2, s68, grid, 4, 0);
	struct cspec stacked[] = {
		{ { 0, 0, 0 }, { 1, 3, 4 }, C_ORDER, 0, 0 }, { { 0, 3, 0 }, { 1, 3, 4 }, C_ORDER, 0, 0 },
		{ { 1, 0, 0 }, { 1, 3, 4 }, C_ORDER, 0, 0 }, { { 1, 3, 0 }, { 1, 3, 4 }, C_ORDER, 0, 0 } };
	run_case("Megatron layer-stacked TP chunks", CKPT_DT_I32, 3, s264, stacked, 4, 0);
	struct cspec tr[] = { { { 0, 0 }, { 5, 4 }, TRANSPOSED, 0, 0 } };
	run_case("transposed storage, stride (1,5)", CKPT_DT_I32, 2, s54, tr, 1, 0);
	struct cspec padded[] = { { { 0, 0 }, { 2, 4 }, PADDED, 0, 0 }, { { 2, 0 }, { 3, 4 }, TRANSPOSED, 0, 0 } };
	run_case("storage offset and padded rows", CKPT_DT_I32, 2, s54, padded, 2, 0);
	struct cspec big[] = { { { 0, 0 }, { 2, 3 }, C_ORDER, 0, 1 }, { { 2, 0 }, { 2, 3 }, TRANSPOSED, 0, 1 } };
	run_case("big-endian int16 items", CKPT_DT_I16, 2, s43, big, 2, 0);
	struct cspec z[] = { { { 0, 0 }, { 2, 4 }, C_ORDER, 1, 0 }, { { 2, 0 }, { 2, 4 }, TRANSPOSED, 1, 0 } };
	run_case("zstd items in two frames", CKPT_DT_I32, 2, s44, z, 2, 0);
	struct cspec hole[] = { { { 0, 0 }, { 2, 4 }, C_ORDER, 0, 0 }, { { 3, 1 }, { 1, 2 }, C_ORDER, 0, 0 } };
	run_case("holes read as zeros", CKPT_DT_I32, 2, s44, hole, 2, 1);
	struct cspec scalar[] = { { { 0 }, { 0 }, C_ORDER, 0, 0 } };
	run_case("0-d tensor", CKPT_DT_I32, 0, s44, scalar, 1, 0);
	struct cspec cube[] = {
		{ { 0, 0, 0 }, { 2, 2, 5 }, C_ORDER, 0, 0 }, { { 0, 2, 0 }, { 2, 2, 2 }, C_ORDER, 0, 0 },
		{ { 0, 2, 2 }, { 2, 2, 3 }, C_ORDER, 1, 0 }, { { 2, 0, 0 }, { 1, 4, 5 }, PADDED, 0, 0 } };
	run_case("3-D irregular split", CKPT_DT_I32, 3, s345, cube, 4, 0);
	check_zstd_bomb();
	return tap_done();
}

/* test-zip.c - unit tests for the torch.save zip reader (src/tzip.c) and the
 * item decoder (src/item.c). */
#define _GNU_SOURCE 1
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../../src/catalog.h"
#include "../../src/item.h"
#include "../../src/tzip.h"
#include "tap.h"
#include "torchsave.h"

static struct ckpt_blob mem_blob(const struct buf *b, size_t len)
{
	return (struct ckpt_blob){ .mem = b->p, .len = len, .label = "mem" };
}

static void check_layout(int zip64, const char *prefix)
{
	static const float data[6] = { 1, 2, 3, 4, 5, 6 };
	const int64_t size[2] = { 2, 3 }, stride[2] = { 3, 1 };
	struct buf b = { 0 };
	struct tzip z;
	struct ckpt_err e = { 0 };

	torch_item(&b, prefix, "FloatStorage", 6, 0, 2, size, stride, data, sizeof(data), "little");
	struct ckpt_blob blob = mem_blob(&b, b.n);
	int rc = tzip_open(&z, &blob, &e);
	if (!ok(rc == 0, "%s zip (zip64=%d) opens (%s)", prefix, zip64, e.msg)) {
		free(b.p);
		return;
	}
	const struct tzip_entry *d = tzip_find(&z, "data/0");
	ok(strcmp(z.prefix, prefix) == 0 && z.n == 4, "prefix '%s' taken from the first record, 4 records",
	   z.prefix);
	ok(d && d->size == sizeof(data) && d->data_off % 64 == 0 &&
	   memcmp(b.p + d->data_off, data, sizeof(data)) == 0,
	   "data/0 found through FB padding at a 64-byte boundary (offset %llu)",
	   d ? (unsigned long long)d->data_off : 0ull);
	ok(tzip_find(&z, "data/1") == NULL && tzip_find(&z, "version") != NULL, "lookup by relative name");
	tzip_free(&z);

	struct ckpt_item it;
	rc = ckpt_item_decode(&blob, &it, &e);
	ok(rc == 0 && it.dtype == CKPT_DT_F32 && it.ndim == 2 && it.size[1] == 3 && it.contiguous &&
	   !it.big_endian && it.storage_bytes == sizeof(data), "item decodes: float32 [2,3] contiguous (%s)",
	   e.msg);

	/* every truncation is an error, never a crash */
	int trunc_ok = 1;
	for (size_t n = 0; n < b.n; n++) {
		struct ckpt_blob tb = mem_blob(&b, n);
		struct ckpt_err te = { 0 };
		if (tzip_open(&z, &tb, &te) == 0) {
			/* a prefix can still hold a complete archive only if it ends at the EOCD */
			trunc_ok = 0;
			tzip_free(&z);
		}
	}
	ok(trunc_ok, "every truncated prefix of the archive is rejected");
	free(b.p);
}

static void check_zip64_records(void)
{
	static const uint8_t data[3] = { 7, 8, 9 };
	struct zrec r[1] = { { "data/0", data, 3 } };
	struct buf b = { 0 };
	struct tzip z;
	struct ckpt_err e = { 0 };

	zip_build(&b, "archive", r, 1, 1);
	struct ckpt_blob blob = mem_blob(&b, b.n);
	ok(tzip_open(&z, &blob, &e) == 0 && z.n == 1 && z.ents[0].size == 3 &&
	   b.p[z.ents[0].data_off] == 7, "0xFFFFFFFF sizes and offsets resolved from the zip64 extra (%s)",
	   e.msg);
	if (z.ents)
		tzip_free(&z);
	free(b.p);
}

static void check_corrupt(void)
{
	static const uint8_t data[4] = { 1, 2, 3, 4 };
	struct zrec r[1] = { { "data/0", data, 4 } };
	struct buf b = { 0 };
	struct tzip z;
	struct ckpt_err e = { 0 };

	zip_build(&b, "archive", r, 1, 0);
	/* central directory entry: find "PK\1\2" and set method = 8 (deflate) */
	uint8_t *cd = memmem(b.p, b.n, "PK\1\2", 4);
	cd[10] = 8;
	struct ckpt_blob blob = mem_blob(&b, b.n);
	ok(tzip_open(&z, &blob, &e) == -EINVAL && strstr(e.msg, "compressed record"),
	   "deflated record refused (%s)", e.msg);
	cd[10] = 0;
	b.p[0] = 'X';  /* local header signature */
	ckpt_err_clear(&e);
	ok(tzip_open(&z, &blob, &e) == -EINVAL && strstr(e.msg, "bad local header"),
	   "bad local header signature (%s)", e.msg);
	b.p[0] = 'P';
	uint8_t *eocd = b.p + b.n - 22;
	eocd[16] = 0xEE;  /* classic cd offset, ignored because zip64 wins */
	uint8_t *z64 = memmem(b.p, b.n, "PK\6\6", 4);
	z64[48] = 0xEE;   /* zip64 cd offset out of range */
	ckpt_err_clear(&e);
	ok(tzip_open(&z, &blob, &e) == -EINVAL && strstr(e.msg, "out of range"),
	   "central directory offset out of range (%s)", e.msg);
	free(b.p);
}

static void check_items(void)
{
	static const int16_t s16[12] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 };
	const int64_t size[2] = { 3, 2 }, tstride[2] = { 1, 3 }, cstride[2] = { 2, 1 };
	struct buf b = { 0 };
	struct ckpt_item it;
	struct ckpt_err e = { 0 };
	struct ckpt_blob blob;

	torch_item(&b, "archive", "ShortStorage", 12, 2, 2, size, tstride, s16, sizeof(s16), "big");
	blob = mem_blob(&b, b.n);
	ok(ckpt_item_decode(&blob, &it, &e) == 0 && it.dtype == CKPT_DT_I16 && !it.contiguous &&
	   it.storage_offset == 2 && it.big_endian, "strided int16 item with offset, big endian (%s)", e.msg);
	int64_t idx[2] = { 2, 1 };
	ok(ckpt_item_elem_off(&it, idx) == (2 + 2 * 1 + 1 * 3) * 2, "element offset follows strides");
	free(b.p);

	b = (struct buf){ 0 };
	torch_item(&b, "archive", "ShortStorage", 12, 0, 2, size, cstride, s16, sizeof(s16), "middle");
	blob = mem_blob(&b, b.n);
	ckpt_err_clear(&e);
	ok(ckpt_item_decode(&blob, &it, &e) == -EINVAL && strstr(e.msg, "byteorder"),
	   "unknown byteorder refused (%s)", e.msg);
	free(b.p);

	b = (struct buf){ 0 };
	torch_item(&b, "archive", "ShortStorage", 12, 7, 2, size, cstride, s16, sizeof(s16), NULL);
	blob = mem_blob(&b, b.n);
	ckpt_err_clear(&e);
	ok(ckpt_item_decode(&blob, &it, &e) == -EINVAL && strstr(e.msg, "reaches past its storage"),
	   "view reaching past its storage refused (%s)", e.msg);
	free(b.p);

	b = (struct buf){ 0 };
	torch_item(&b, "archive", "ShortStorage", 20, 0, 2, size, cstride, s16, sizeof(s16), NULL);
	blob = mem_blob(&b, b.n);
	ckpt_err_clear(&e);
	ok(ckpt_item_decode(&blob, &it, &e) == -EINVAL && strstr(e.msg, "storage record is 24 bytes"),
	   "storage record shorter than data.pkl says refused (%s)", e.msg);
	free(b.p);

	b = (struct buf){ 0 };
	torch_item(&b, "archive", "QInt8Storage", 12, 0, 2, size, cstride, s16, sizeof(s16), NULL);
	blob = mem_blob(&b, b.n);
	ckpt_err_clear(&e);
	ok(ckpt_item_decode(&blob, &it, &e) == -EINVAL && strstr(e.msg, "quantized"),
	   "quantized storage refused (%s)", e.msg);
	free(b.p);

	uint8_t notzip[64] = "not a zip at all";
	blob = (struct ckpt_blob){ .mem = notzip, .len = sizeof(notzip), .label = "junk" };
	ckpt_err_clear(&e);
	ok(ckpt_item_decode(&blob, &it, &e) == -EINVAL && strstr(e.msg, "junk: byte 0"),
	   "non-zip item refused with its name and offset (%s)", e.msg);
}

/* Every item of every shared fixture decodes (the catalogue decodes all
 * uncompressed items when it opens a checkpoint). */
static void check_fixture_items(void)
{
	const char *const *names = tap_fixture_names;
	const char *fx = tap_fixtures();
	if (!fx) {
		printf("# shared fixtures absent: fixture checks skipped\n");
		return;
	}
	for (size_t i = 0; i < TAP_NFIXTURES; i++) {
		char dir[4300];
		struct ckpt_catalog c;
		struct ckpt_opts o = { 0 };
		struct ckpt_err e = { 0 };
		size_t decoded = 0, total = 0;
		snprintf(dir, sizeof(dir), "%s/dcp/%s", fx, names[i]);
		int rc = ckpt_catalog_open(&c, dir, &o, &e);
		if (!ok(rc == 0, "%s: catalogue opens (%s)", names[i], e.msg))
			continue;
		for (size_t t = 0; t < c.ntensors; t++)
			for (size_t k = 0; k < c.tensors[t].nchunks; k++) {
				total++;
				decoded += c.tensors[t].chunks[k].decoded;
			}
		ok(total > 0 && decoded == total, "%s: all %zu tensor items decoded", names[i], total);
		ckpt_catalog_close(&c);
	}
}

int main(void)
{
	check_layout(0, "archive");
	check_layout(0, "common");
	check_zip64_records();
	check_corrupt();
	check_items();
	check_fixture_items();
	return tap_done();
}

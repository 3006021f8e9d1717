/* fuzz-item.c - libFuzzer harness: one DCP tensor item (a torch.save zip
 * archive) decoded from memory with ckpt_item_decode, and the zip reader
 * tzip_open on its own.  When an item decodes, its claims are checked: every
 * element it describes must lie inside the storage record inside the blob. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h"
#include "dtype.h"
#include "err.h"
#include "item.h"
#include "tzip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_item(const struct ckpt_item *it, const uint8_t *data, size_t size)
{
	size_t es = ckpt_dtype_size(it->dtype);
	volatile uint8_t sink = 0;

	if (es == 0 || it->ndim < 0 || it->ndim > CKPT_MAXDIM)
		abort();
	if (it->data_off > size || it->storage_bytes > size - it->data_off) {
		fprintf(stderr, "item storage [%llu, +%llu) outside the %zu-byte blob\n",
			(unsigned long long)it->data_off, (unsigned long long)it->storage_bytes, size);
		abort();
	}
	uint64_t numel = 1;
	for (int d = 0; d < it->ndim; d++) {
		if (it->size[d] < 0 || it->stride[d] < 0)
			abort();
		numel *= (uint64_t)it->size[d];
	}
	if (numel == 0)
		return;
	/* first and last element, and the corner of every dimension */
	int64_t idx[CKPT_MAXDIM] = { 0 };
	for (int pass = 0; pass <= it->ndim + 1; pass++) {
		for (int d = 0; d < it->ndim; d++)
			idx[d] = pass == it->ndim + 1 ? it->size[d] - 1 : (d == pass ? it->size[d] - 1 : 0);
		uint64_t off = ckpt_item_elem_off(it, idx);
		if (off > it->storage_bytes || es > it->storage_bytes - off) {
			fprintf(stderr, "element at storage byte %llu (+%zu) outside the %llu-byte "
				"storage record\n", (unsigned long long)off, es,
				(unsigned long long)it->storage_bytes);
			abort();
		}
		for (size_t b = 0; b < es; b++)
			sink ^= data[it->data_off + off + b];
	}
	(void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ckpt_blob b = { .fd = -1, .base = 0, .len = size, .mem = data, .label = "fuzz-item" };
	struct ckpt_err e = { 0 };
	struct ckpt_item it;
	struct tzip z;

	/* the blob reader copies, so hand it an exact-size heap copy: ASan then
	 * sees any read past the end */
	uint8_t *copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	b.mem = copy;

	if (ckpt_item_decode(&b, &it, &e) == 0)
		check_item(&it, copy, size);
	else if (!e.msg[0] || e.code >= 0)
		abort();

	ckpt_err_clear(&e);
	if (tzip_open(&z, &b, &e) == 0) {
		for (size_t i = 0; i < z.n; i++) {
			if (z.ents[i].data_off > size || z.ents[i].size > size - z.ents[i].data_off)
				abort();  /* records must lie inside the blob */
		}
		(void)tzip_find(&z, "data.pkl");
		(void)tzip_find(&z, "data/0");
		(void)tzip_find(&z, "byteorder");
		tzip_free(&z);
	} else if (!e.msg[0] || e.code >= 0) {
		abort();
	}
	free(copy);
	return 0;
}

/* torchsave.h - builds torch.save-style archives in memory for the unit
 * tests: stored zip records with 64-byte alignment pads (FB extra), zero
 * local sizes plus data descriptors, zip64 end records, and a protocol-2
 * data.pkl calling torch._utils._rebuild_tensor_v2 exactly as torch writes it
 * (dcp-format.md 4.1 and 4.3). */
#ifndef CKPT_TORCHSAVE_H
#define CKPT_TORCHSAVE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct buf {
	uint8_t *p;
	size_t n, cap;
};

static void put(struct buf *b, const void *d, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
	}
	memcpy(b->p + b->n, d, n);
	b->n += n;
}

static void put_le(struct buf *b, uint64_t v, int n)
{
	uint8_t t[8];
	for (int i = 0; i < n; i++)
		t[i] = (uint8_t)(v >> (8 * i));
	put(b, t, (size_t)n);
}

static void put_str(struct buf *b, const char *s)
{
	put(b, s, strlen(s));
}

struct zrec {
	const char *name;
	const void *data;
	size_t len;
};

/* Writes a zip of the records with names "<prefix>/<name>".  With zip64
 * set, the central directory uses 0xFFFFFFFF sizes and a zip64 extra. */
static void zip_build(struct buf *out, const char *prefix, const struct zrec *r, size_t n, int zip64)
{
	uint64_t *lho = calloc(n, sizeof(*lho));
	char name[256];

	for (size_t i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "%s/%s", prefix, r[i].name);
		size_t nl = strlen(name);
		lho[i] = out->n;
		put_str(out, "PK\3\4");
		put_le(out, 0, 2); put_le(out, 0x0808, 2); put_le(out, 0, 2);
		put_le(out, 0, 4); put_le(out, 0, 4); put_le(out, 0, 4); put_le(out, 0, 4);
		put_le(out, nl, 2);
		size_t here = out->n + 2 + nl + 4;  /* data position without padding */
		size_t pad = (64 - here % 64) % 64;
		put_le(out, 4 + pad, 2);
		put(out, name, nl);
		put_str(out, "FB");
		put_le(out, pad, 2);
		for (size_t k = 0; k < pad; k++)
			put_str(out, "Z");
		put(out, r[i].data, r[i].len);
		put_str(out, "PK\7\10");
		put_le(out, 0, 4); put_le(out, r[i].len, 4); put_le(out, r[i].len, 4);
	}
	uint64_t cd = out->n;
	for (size_t i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "%s/%s", prefix, r[i].name);
		size_t nl = strlen(name);
		put_str(out, "PK\1\2");
		put_le(out, 0, 2); put_le(out, 0, 2); put_le(out, 0x0808, 2); put_le(out, 0, 2);
		put_le(out, 0, 4); put_le(out, 0, 4);
		put_le(out, zip64 ? 0xFFFFFFFFu : r[i].len, 4);
		put_le(out, zip64 ? 0xFFFFFFFFu : r[i].len, 4);
		put_le(out, nl, 2); put_le(out, zip64 ? 28 : 0, 2); put_le(out, 0, 2);
		put_le(out, 0, 2); put_le(out, 0, 2); put_le(out, 0, 4);
		put_le(out, zip64 ? 0xFFFFFFFFu : lho[i], 4);
		put(out, name, nl);
		if (zip64) {
			put_le(out, 1, 2); put_le(out, 24, 2);
			put_le(out, r[i].len, 8); put_le(out, r[i].len, 8); put_le(out, lho[i], 8);
		}
	}
	uint64_t cd_size = out->n - cd, z64 = out->n;
	put_str(out, "PK\6\6");
	put_le(out, 44, 8); put_le(out, 0, 2); put_le(out, 0, 2); put_le(out, 0, 4); put_le(out, 0, 4);
	put_le(out, n, 8); put_le(out, n, 8); put_le(out, cd_size, 8); put_le(out, cd, 8);
	put_str(out, "PK\6\7");
	put_le(out, 0, 4); put_le(out, z64, 8); put_le(out, 1, 4);
	put_str(out, "PK\5\6");
	put_le(out, 0, 2); put_le(out, 0, 2); put_le(out, n, 2); put_le(out, n, 2);
	put_le(out, cd_size, 4); put_le(out, zip64 ? 0xFFFFFFFFu : cd, 4); put_le(out, 0, 2);
	free(lho);
}

static void pkl_int(struct buf *b, int64_t v)
{
	if (v >= 0 && v < 256) { put_str(b, "K"); put_le(b, (uint64_t)v, 1); }
	else { put(b, "\x8a\x08", 2); put_le(b, (uint64_t)v, 8); }
}

static void pkl_ustr(struct buf *b, const char *s)
{
	put_str(b, "X");
	put_le(b, strlen(s), 4);
	put_str(b, s);
}

/* data.pkl for _rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict()). */
static void pkl_tensor_v2(struct buf *b, const char *storage_cls, int64_t numel, int64_t offset,
			  int ndim, const int64_t *size, const int64_t *stride)
{
	put(b, "\x80\x02", 2);
	put_str(b, "ctorch._utils\n_rebuild_tensor_v2\n");
	put_str(b, "((");
	pkl_ustr(b, "storage");
	put_str(b, "ctorch\n"); put_str(b, storage_cls); put_str(b, "\n");
	pkl_ustr(b, "0");
	pkl_ustr(b, "cpu");
	pkl_int(b, numel);
	put_str(b, "tQ");
	pkl_int(b, offset);
	put_str(b, "(");
	for (int d = 0; d < ndim; d++) pkl_int(b, size[d]);
	put_str(b, "t(");
	for (int d = 0; d < ndim; d++) pkl_int(b, stride[d]);
	put_str(b, "t\x89");
	put_str(b, "ccollections\nOrderedDict\n)R");
	put_str(b, "tR.");
}

/* A whole torch.save item of one tensor. */
static void torch_item(struct buf *out, const char *prefix, const char *storage_cls, int64_t numel,
		       int64_t offset, int ndim, const int64_t *size, const int64_t *stride,
		       const void *storage, size_t storage_len, const char *byteorder)
{
	struct buf pk = { 0 };
	pkl_tensor_v2(&pk, storage_cls, numel, offset, ndim, size, stride);
	struct zrec r[4];
	size_t n = 0;
	r[n++] = (struct zrec){ "data.pkl", pk.p, pk.n };
	if (byteorder)
		r[n++] = (struct zrec){ "byteorder", byteorder, strlen(byteorder) };
	r[n++] = (struct zrec){ "data/0", storage, storage_len };
	r[n++] = (struct zrec){ "version", "3\n", 2 };
	zip_build(out, prefix, r, n, 0);
	free(pk.p);
}

#endif

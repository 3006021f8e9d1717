/* tzip.c - see tzip.h.  Record layout per dcp-format.md section 4.1. */
#include "config.h"
#include "tzip.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define EOCD_SIZE        22u
#define Z64_LOC_SIZE     20u
#define Z64_EOCD_SIZE    56u
#define CDH_SIZE         46u
#define LFH_SIZE         30u
#define MAX_COMMENT      65535u
#define MAX_CD_SIZE      (64u << 20)
#define MAX_ENTRIES      (1u << 20)

static uint64_t le(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = n - 1; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

#define BAD(b, off, ...) bad_zip(e, (b), (off), __VA_ARGS__)

static int bad_zip(struct ckpt_err *e, const struct ckpt_blob *b, uint64_t off,
		   const char *what)
{
	return ckpt_err_set(e, -EINVAL, "%s: byte %llu: corrupt torch.save zip archive: %s",
			    b->label, (unsigned long long)off, what);
}

/* Finds the classic end record; torch writes no comment, so it is usually
 * the last 22 bytes, but search backwards for robustness. */
static int find_eocd(const struct ckpt_blob *b, uint8_t *tail, size_t *tail_len,
		     uint64_t *eocd_off, struct ckpt_err *e)
{
	uint64_t want = EOCD_SIZE + MAX_COMMENT + Z64_LOC_SIZE;
	size_t n = (size_t)(b->len < want ? b->len : want);
	uint64_t start = b->len - n;
	int rc;

	if (b->len < EOCD_SIZE)
		return BAD(b, 0, "too short to hold a zip end record");
	/* First try the common case: only the last 22 + 20 bytes. */
	size_t quick = (size_t)(b->len < EOCD_SIZE + Z64_LOC_SIZE ? b->len : EOCD_SIZE + Z64_LOC_SIZE);
	if ((rc = ckpt_blob_read(b, b->len - quick, tail, quick, e)))
		return rc;
	if (memcmp(tail + quick - EOCD_SIZE, "PK\5\6", 4) == 0) {
		*tail_len = quick;
		*eocd_off = b->len - EOCD_SIZE;
		return 0;
	}
	if ((rc = ckpt_blob_read(b, start, tail, n, e)))
		return rc;
	for (size_t i = n - EOCD_SIZE + 1; i-- > 0;) {
		if (memcmp(tail + i, "PK\5\6", 4) == 0) {
			*eocd_off = start + i;
			/* keep the 20 bytes before it (zip64 locator) at the front */
			size_t from = i >= Z64_LOC_SIZE ? i - Z64_LOC_SIZE : 0;
			memmove(tail, tail + from, i + EOCD_SIZE - from);
			*tail_len = i + EOCD_SIZE - from;
			return 0;
		}
	}
	return BAD(b, b->len, "no end-of-central-directory record (truncated item?)");
}

static int parse_cd_entry(struct tzip *z, const struct ckpt_blob *b, const uint8_t *cd,
			  size_t cd_len, size_t *pos, uint64_t cd_off, struct ckpt_err *e)
{
	const uint8_t *h = cd + *pos;
	uint64_t here = cd_off + *pos;
	uint8_t lfh[LFH_SIZE];
	int rc;

	if (cd_len - *pos < CDH_SIZE || memcmp(h, "PK\1\2", 4) != 0)
		return BAD(b, here, "bad central directory entry signature");
	unsigned method = (unsigned)le(h + 10, 2);
	uint64_t csize = le(h + 20, 4), usize = le(h + 24, 4), lho = le(h + 42, 4);
	size_t nl = (size_t)le(h + 28, 2), xl = (size_t)le(h + 30, 2), cl = (size_t)le(h + 32, 2);
	if (cd_len - *pos - CDH_SIZE < nl + xl + cl)
		return BAD(b, here, "central directory entry runs past the directory");
	const uint8_t *name = h + CDH_SIZE, *x = name + nl, *xend = x + xl;
	/* zip64 extra: only the fields that overflowed, in usize, csize, lho order */
	while (xend - x >= 4) {
		unsigned id = (unsigned)le(x, 2), sz = (unsigned)le(x + 2, 2);
		const uint8_t *d = x + 4;
		if ((size_t)(xend - d) < sz)
			return BAD(b, here, "extra field runs past the entry");
		if (id == 1) {
			const uint8_t *q = d, *qe = d + sz;
			if (usize == 0xFFFFFFFFu) { if (qe - q < 8) return BAD(b, here, "short zip64 extra"); usize = le(q, 8); q += 8; }
			if (csize == 0xFFFFFFFFu) { if (qe - q < 8) return BAD(b, here, "short zip64 extra"); csize = le(q, 8); q += 8; }
			if (lho == 0xFFFFFFFFu) { if (qe - q < 8) return BAD(b, here, "short zip64 extra"); lho = le(q, 8); }
		}
		x = d + sz;
	}
	if (method != 0)
		return BAD(b, here, "compressed record (torch.save stores records uncompressed)");
	if (csize != usize)
		return BAD(b, here, "stored record with different compressed and plain sizes");
	if ((rc = ckpt_blob_read(b, lho, lfh, LFH_SIZE, e)))
		return rc;
	if (memcmp(lfh, "PK\3\4", 4) != 0)
		return BAD(b, lho, "bad local header signature");
	uint64_t data_off = lho + LFH_SIZE + le(lfh + 26, 2) + le(lfh + 28, 2);
	if (data_off > b->len || usize > b->len - data_off)
		return BAD(b, lho, "record data runs past the end of the item");

	struct tzip_entry *ent = &z->ents[z->n];
	ent->name = malloc(nl + 1);
	if (!ent->name)
		return ckpt_err_set(e, -ENOMEM, "out of memory");
	memcpy(ent->name, name, nl);
	ent->name[nl] = '\0';
	ent->data_off = data_off;
	ent->size = usize;
	z->n++;
	*pos += CDH_SIZE + nl + xl + cl;
	return 0;
}

int tzip_open(struct tzip *z, const struct ckpt_blob *b, struct ckpt_err *e)
{
	uint8_t *tail = NULL, *cd = NULL;
	size_t tail_len = 0;
	uint64_t eocd_off = 0, cd_off, cd_size, count;
	int rc;

	memset(z, 0, sizeof(*z));
	tail = malloc(EOCD_SIZE + MAX_COMMENT + Z64_LOC_SIZE);
	if (!tail)
		return ckpt_err_set(e, -ENOMEM, "out of memory");
	if ((rc = find_eocd(b, tail, &tail_len, &eocd_off, e)))
		goto out;
	const uint8_t *eocd = tail + tail_len - EOCD_SIZE;
	count = le(eocd + 10, 2);
	cd_size = le(eocd + 12, 4);
	cd_off = le(eocd + 16, 4);
	if (tail_len >= EOCD_SIZE + Z64_LOC_SIZE &&
	    memcmp(eocd - Z64_LOC_SIZE, "PK\6\7", 4) == 0) {
		uint8_t z64[Z64_EOCD_SIZE];
		uint64_t z64_off = le(eocd - Z64_LOC_SIZE + 8, 8);
		if ((rc = ckpt_blob_read(b, z64_off, z64, sizeof(z64), e)))
			goto out;
		if (memcmp(z64, "PK\6\6", 4) != 0) {
			rc = BAD(b, z64_off, "bad zip64 end record signature");
			goto out;
		}
		count = le(z64 + 32, 8);
		cd_size = le(z64 + 40, 8);
		cd_off = le(z64 + 48, 8);
	}
	if (cd_off > eocd_off || cd_size > eocd_off - cd_off || cd_size > MAX_CD_SIZE ||
	    count > MAX_ENTRIES || count * CDH_SIZE > cd_size) {
		rc = BAD(b, eocd_off, "central directory location or size out of range");
		goto out;
	}
	cd = malloc(cd_size ? cd_size : 1);
	z->ents = calloc(count ? count : 1, sizeof(*z->ents));
	if (!cd || !z->ents) {
		rc = ckpt_err_set(e, -ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = ckpt_blob_read(b, cd_off, cd, cd_size, e)))
		goto out;
	size_t pos = 0;
	for (uint64_t i = 0; i < count; i++)
		if ((rc = parse_cd_entry(z, b, cd, cd_size, &pos, cd_off, e)))
			goto out;
	if (z->n == 0) {
		rc = BAD(b, cd_off, "archive has no records");
		goto out;
	}
	const char *slash = strchr(z->ents[0].name, '/');
	size_t pl = slash ? (size_t)(slash - z->ents[0].name) : 0;
	z->prefix = strndup(z->ents[0].name, pl);
	if (!z->prefix)
		rc = ckpt_err_set(e, -ENOMEM, "out of memory");
out:
	free(tail);
	free(cd);
	if (rc)
		tzip_free(z);
	return rc;
}

const struct tzip_entry *tzip_find(const struct tzip *z, const char *rel)
{
	size_t pl = strlen(z->prefix);
	for (size_t i = 0; i < z->n; i++) {
		const char *n = z->ents[i].name;
		if (strncmp(n, z->prefix, pl) == 0 && n[pl] == '/' && strcmp(n + pl + 1, rel) == 0)
			return &z->ents[i];
	}
	return NULL;
}

void tzip_free(struct tzip *z)
{
	for (size_t i = 0; i < z->n; i++)
		free(z->ents[i].name);
	free(z->ents);
	free(z->prefix);
	memset(z, 0, sizeof(*z));
}

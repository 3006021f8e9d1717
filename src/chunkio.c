/* chunkio.c - see chunkio.h. */
#include "config.h"
#include "chunkio.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

struct centry {
	struct ckpt_chunk *ch;
	uint8_t *buf;          /* whole decompressed item, or the storage record */
	uint64_t len;
	uint64_t base;         /* blob offset that buf[0] stands for */
	unsigned refs;
	int loading;           /* being loaded by one thread, without the lock */
	struct centry *prev, *next;  /* LRU: head = most recent */
};

struct ckpt_chunkio {
	struct ckpt_catalog *c;
	struct ckpt_io_stats stats;
	uint64_t budget, used;
	pthread_mutex_t lock;
	pthread_cond_t loaded;   /* an entry stopped loading (loaded or dropped) */
	struct centry *head, *tail;
};

struct ckpt_io_stats *ckpt_chunkio_stats(struct ckpt_chunkio *io)
{
	return &io->stats;
}

int ckpt_chunkio_new(struct ckpt_chunkio **out, struct ckpt_catalog *c, uint64_t budget)
{
	struct ckpt_chunkio *io = calloc(1, sizeof(*io));
	if (!io)
		return -ENOMEM;
	io->c = c;
	io->budget = budget;
	pthread_mutex_init(&io->lock, NULL);
	pthread_cond_init(&io->loaded, NULL);
	*out = io;
	return 0;
}

static void unlink_entry(struct ckpt_chunkio *io, struct centry *ce)
{
	if (ce->prev) ce->prev->next = ce->next; else io->head = ce->next;
	if (ce->next) ce->next->prev = ce->prev; else io->tail = ce->prev;
	ce->prev = ce->next = NULL;
}

static void push_front(struct ckpt_chunkio *io, struct centry *ce)
{
	ce->next = io->head;
	ce->prev = NULL;
	if (io->head) io->head->prev = ce; else io->tail = ce;
	io->head = ce;
}

void ckpt_chunkio_free(struct ckpt_chunkio *io)
{
	if (!io)
		return;
	for (struct centry *ce = io->head, *n; ce; ce = n) {
		n = ce->next;
		free(ce->buf);
		free(ce);
	}
	pthread_mutex_destroy(&io->lock);
	pthread_cond_destroy(&io->loaded);
	free(io);
}

/* Evicts unreferenced entries from the tail until used <= budget.  Locked. */
static void evict(struct ckpt_chunkio *io)
{
	struct centry *ce = io->tail;
	while (ce && io->used > io->budget) {
		struct centry *p = ce->prev;
		if (ce->refs == 0) {
			unlink_entry(io, ce);
			io->used -= ce->len;
			free(ce->buf);
			free(ce);
		}
		ce = p;
	}
}

/* What a decompressed tensor item may hold beyond its elements: data.pkl,
 * the small side records, alignment pads and the zip directory. */
#define ITEM_OVERHEAD (16u << 20)

/* Doubles the output buffer of a decompression, up to limit bytes. */
static int grow(ZSTD_outBuffer *ob, size_t limit, const char *label, struct ckpt_err *e)
{
	if (ob->size >= limit)
		return ckpt_err_set(e, -EFBIG, "%s: the zstd stream expands past %zu bytes, more than "
				    "its tensor chunk can hold (a decompression bomb?)", label, limit);
	size_t ns = ob->size * 2 < limit ? ob->size * 2 : limit;
	uint8_t *nb = realloc(ob->dst, ns);
	if (!nb)
		return ckpt_err_set(e, -ENOMEM, "out of memory");
	ob->dst = nb;
	ob->size = ns;
	return 0;
}

/* Decompresses every frame of in; the output may not exceed limit bytes. */
static int zstd_all(const uint8_t *in, size_t inlen, size_t limit, uint8_t **out,
		    uint64_t *outlen, const char *label, struct ckpt_err *e)
{
	ZSTD_DStream *ds = ZSTD_createDStream();
	size_t ret = 1, first = inlen * 4 + 4096 < limit ? inlen * 4 + 4096 : limit;
	ZSTD_inBuffer ib = { in, inlen, 0 };
	ZSTD_outBuffer ob = { malloc(first), first, 0 };
	int rc = 0;

	if (!ds || !ob.dst) {
		rc = ckpt_err_set(e, -ENOMEM, "out of memory");
		goto out;
	}
	ZSTD_initDStream(ds);
	while (ib.pos < ib.size) {
		if (ob.pos == ob.size && (rc = grow(&ob, limit, label, e)))
			goto out;
		size_t before = ib.pos;
		ret = ZSTD_decompressStream(ds, &ob, &ib);
		if (ZSTD_isError(ret)) {
			rc = ckpt_err_set(e, -EINVAL, "%s: byte %zu: zstd stream is corrupt: %s", label,
					  before, ZSTD_getErrorName(ret));
			goto out;
		}
	}
	/* flush whatever the last frame still holds */
	while (ret != 0) {
		if (ob.pos == ob.size && (rc = grow(&ob, limit, label, e)))
			goto out;
		size_t opos = ob.pos;
		ret = ZSTD_decompressStream(ds, &ob, &ib);
		if (ZSTD_isError(ret) || (ret != 0 && ob.pos == opos && ob.pos < ob.size)) {
			rc = ckpt_err_set(e, -EINVAL, "%s: byte %zu: zstd stream ends inside a frame "
					  "(truncated item?)", label, inlen);
			goto out;
		}
	}
	*out = ob.dst;
	*outlen = ob.pos;
	ob.dst = NULL;
out:
	free(ob.dst);
	ZSTD_freeDStream(ds);
	return rc;
}

/* Loads what a chunk needs in memory into ce (buf, len, base), binding the
 * chunk's item after decompression.  Called WITHOUT the lock: the caller's
 * placeholder entry (loading) makes it the only thread loading ch. */
static int load(struct ckpt_chunkio *io, const struct ckpt_tensor *t, struct ckpt_chunk *ch,
		struct centry *ce, struct ckpt_err *e)
{
	const struct ckpt_source_file *f = &io->c->files[ch->file];
	char label[1024];
	uint8_t *raw = NULL, *buf = NULL;
	uint64_t len = 0, base = 0;
	int rc;

	ckpt_item_label(io->c, t, ch, label, sizeof(label));
	if (ch->zstd) {
		if (!(raw = malloc(ch->item_len ? ch->item_len : 1)))
			return ckpt_err_set(e, -ENOMEM, "out of memory");
		if ((rc = ckpt_pread_full(f->fd, raw, ch->item_len, ch->item_off))) {
			free(raw);
			return ckpt_err_set(e, rc, "%s: read failed: %s", label, ckpt_read_strerror(rc));
		}
		uint64_t limit = ch->numel * ckpt_dtype_size(t->dtype) + ITEM_OVERHEAD;
		rc = zstd_all(raw, ch->item_len, limit > SIZE_MAX ? SIZE_MAX : (size_t)limit, &buf, &len,
			      label, e);
		free(raw);
		if (rc)
			return rc;
		if (!ch->decoded) {
			struct ckpt_blob blob = { .mem = buf, .len = len, .label = label };
			struct ckpt_item it;
			if ((rc = ckpt_item_decode(&blob, &it, e)) ||
			    (rc = ckpt_chunk_bind(t, ch, &it, label, e))) {
				free(buf);
				return rc;
			}
		}
	} else {
		base = ch->item.data_off;
		len = ch->item.storage_bytes;
		if (!(buf = malloc(len ? len : 1)))
			return ckpt_err_set(e, -ENOMEM, "out of memory");
		if ((rc = ckpt_pread_full(f->fd, buf, len, ch->item_off + base))) {
			free(buf);
			return ckpt_err_set(e, rc, "%s: read failed: %s", label, ckpt_read_strerror(rc));
		}
	}
	ce->buf = buf;
	ce->len = len;
	ce->base = base;
	return 0;
}

/* The cache entry of ch, loaded, with a reference for the caller.  One
 * thread loads a given item (decompression runs outside the lock, so items
 * load in parallel); others wanting it wait for that load. */
static int acquire(struct ckpt_chunkio *io, const struct ckpt_tensor *t, struct ckpt_chunk *ch,
		   struct centry **out, struct ckpt_err *e)
{
	struct centry *ce;
	int rc;

	pthread_mutex_lock(&io->lock);
	for (;;) {
		for (ce = io->head; ce && ce->ch != ch; ce = ce->next)
			;
		if (!ce || !ce->loading)
			break;
		pthread_cond_wait(&io->loaded, &io->lock);  /* then look again: it may have failed */
	}
	if (ce) {
		unlink_entry(io, ce);
		push_front(io, ce);
		io->stats.item_hits++;
		ce->refs++;
		*out = ce;
		pthread_mutex_unlock(&io->lock);
		return 0;
	}
	if (!(ce = calloc(1, sizeof(*ce)))) {
		pthread_mutex_unlock(&io->lock);
		return ckpt_err_set(e, -ENOMEM, "out of memory");
	}
	ce->ch = ch;
	ce->loading = 1;
	ce->refs = 1;
	push_front(io, ce);
	io->stats.item_loads++;
	pthread_mutex_unlock(&io->lock);

	rc = load(io, t, ch, ce, e);

	pthread_mutex_lock(&io->lock);
	ce->loading = 0;
	if (rc) {
		unlink_entry(io, ce);
		free(ce);
	} else {
		io->used += ce->len;
		*out = ce;
		evict(io);
	}
	pthread_cond_broadcast(&io->loaded);
	pthread_mutex_unlock(&io->lock);
	return rc;
}

static void release(struct ckpt_chunkio *io, struct centry *ce)
{
	pthread_mutex_lock(&io->lock);
	ce->refs--;
	evict(io);
	pthread_mutex_unlock(&io->lock);
}

static void swap_bytes(uint8_t *p, uint64_t n, size_t es)
{
	for (uint64_t i = 0; i < n; i++, p += es)
		for (size_t a = 0, b = es - 1; a < b; a++, b--) {
			uint8_t x = p[a];
			p[a] = p[b];
			p[b] = x;
		}
}

/* Strided copy of n elements from an in-memory storage. */
static void copy_strided(const struct ckpt_item *it, const uint8_t *storage, uint64_t first,
			 uint64_t n, uint8_t *dst, size_t es)
{
	int64_t idx[CKPT_MAXDIM];
	int nd = it->ndim;

	for (int d = nd - 1; d >= 0; d--) {
		idx[d] = (int64_t)(first % (uint64_t)it->size[d]);
		first /= (uint64_t)it->size[d];
	}
	while (n > 0) {
		uint64_t off = ckpt_item_elem_off(it, idx);
		if (nd == 0) {
			memcpy(dst, storage + off, es);
			return;
		}
		/* walk the innermost dimension */
		uint64_t row = (uint64_t)(it->size[nd - 1] - idx[nd - 1]);
		if (row > n)
			row = n;
		uint64_t step = (uint64_t)it->stride[nd - 1] * es;
		if (step == es) {
			memcpy(dst, storage + off, row * es);
		} else {
			for (uint64_t i = 0; i < row; i++)
				memcpy(dst + i * es, storage + off + i * step, es);
		}
		dst += row * es;
		n -= row;
		idx[nd - 1] += (int64_t)row;
		for (int d = nd - 1; d > 0 && idx[d] == it->size[d]; d--) {
			idx[d] = 0;
			idx[d - 1]++;
		}
	}
}

int ckpt_chunkio_copy(struct ckpt_chunkio *io, const struct ckpt_tensor *t,
		      struct ckpt_chunk *ch, uint64_t first, uint64_t n, uint8_t *dst,
		      struct ckpt_err *e)
{
	size_t es = ckpt_dtype_size(t->dtype);
	int rc;

	if (!ch->zstd && ch->item.contiguous) {
		const struct ckpt_source_file *f = &io->c->files[ch->file];
		uint64_t off = ch->item_off + ch->item.data_off +
			       ((uint64_t)ch->item.storage_offset + first) * es;
		rc = ckpt_pread_full(f->fd, dst, n * es, off);
		__atomic_fetch_add(&io->stats.bytes_read, n * es, __ATOMIC_RELAXED);
		if (rc) {
			char label[1024];
			ckpt_item_label(io->c, t, ch, label, sizeof(label));
			return ckpt_err_set(e, rc, "%s: read of %llu bytes at file offset %llu failed: %s",
					    label, (unsigned long long)(n * es),
					    (unsigned long long)off,
					    ckpt_read_strerror(rc));
		}
	} else {
		struct centry *ce = NULL;
		if ((rc = acquire(io, t, ch, &ce, e)))
			return rc;
		/* ch->item is final once acquire() returned (bound by the one thread that
		 * loaded the item, published to the others by the lock) */
		const uint8_t *storage = ce->buf + ch->item.data_off - ce->base;
		copy_strided(&ch->item, storage, first, n, dst, es);
		release(io, ce);
	}
	if (ch->item.big_endian && es > 1)
		swap_bytes(dst, n, es);
	return 0;
}

/* blocks.c - see blocks.h.
 *
 * One mutex guards the slots, the request queue and the streams; two
 * condition variables: `changed` (a slot left BUSY) and `work` (a request
 * was queued, or the pool is stopping).  Slots are found by a linear scan:
 * there are budget / block of them (64 for the default 64 MiB), against a
 * block's worth of copying or converting per lookup. */
#include "config.h"
#include "blocks.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define NSTREAMS 16
#define MAX_AHEAD 32

enum { SLOT_FREE, SLOT_BUSY, SLOT_READY };

struct slot {
	void *owner;
	const struct ckpt_block_src *src;
	uint32_t file;
	uint64_t blk;
	size_t len;
	int state, refs;
	int ahead;          /* made by read-ahead and not read yet */
	uint64_t used;      /* LRU stamp */
	uint8_t *buf;
};

struct request {
	void *owner;
	const struct ckpt_block_src *src;
	uint32_t file;
	uint64_t blk;
};

struct stream {            /* a file being read forward */
	void *owner;
	uint32_t file;
	uint64_t last, queued;  /* last block read; read-ahead queued up to here */
	uint64_t used;
};

struct ckpt_blocks {
	pthread_mutex_t mu;
	pthread_cond_t changed, work;
	size_t block;
	struct slot *slot;
	size_t nslots;
	struct request *q;      /* ring */
	size_t qcap, qhead, qlen;
	struct stream st[NSTREAMS];
	uint64_t clock;
	size_t ahead;           /* most blocks read ahead of one forward reader */
	int stop;
	pthread_t *tid;
	int want, nworkers;     /* workers asked for; started (on first use) */
	struct ckpt_blocks_stats stats;
};

static struct slot *find(struct ckpt_blocks *b, void *owner, uint32_t file, uint64_t blk)
{
	for (size_t i = 0; i < b->nslots; i++) {
		struct slot *s = &b->slot[i];
		if (s->state != SLOT_FREE && s->owner == owner && s->file == file && s->blk == blk)
			return s;
	}
	return NULL;
}

/* A slot to reuse: free first, then the least recently used ready block
 * nobody is copying; read-ahead blocks not read yet only for a demand read
 * (read-ahead must not push out read-ahead).  NULL when all are taken.
 * The slot's buffer is allocated on first use. */
static struct slot *victim(struct ckpt_blocks *b, int demand)
{
	struct slot *best = NULL;
	for (size_t i = 0; i < b->nslots; i++) {
		struct slot *s = &b->slot[i];
		if (s->state == SLOT_FREE) {
			best = s;
			break;
		}
		if (s->state != SLOT_READY || s->refs || (s->ahead && !demand))
			continue;
		if (!best || (best->ahead && !s->ahead) ||
		    (best->ahead == s->ahead && s->used < best->used))
			best = s;
	}
	if (best && !best->buf && !(best->buf = malloc(b->block)))
		return NULL;
	return best;
}

/* Makes the block of slot s (claimed BUSY by the caller) without the lock. */
static int make(struct ckpt_blocks *b, struct slot *s, struct ckpt_err *e)
{
	pthread_mutex_unlock(&b->mu);
	int rc = s->src->fill(s->owner, s->file, s->blk, s->buf, s->len, e);
	pthread_mutex_lock(&b->mu);
	s->state = rc ? SLOT_FREE : SLOT_READY;
	pthread_cond_broadcast(&b->changed);
	return rc;
}

static void claim(struct ckpt_blocks *b, struct slot *s, const struct request *r, size_t len,
		  int ahead)
{
	s->owner = r->owner;
	s->src = r->src;
	s->file = r->file;
	s->blk = r->blk;
	s->len = len;
	s->state = SLOT_BUSY;
	s->refs = 0;
	s->ahead = ahead;
	s->used = ++b->clock;
}

static int queued(struct ckpt_blocks *b, void *owner, uint32_t file, uint64_t blk)
{
	for (size_t i = 0; i < b->qlen; i++) {
		struct request *r = &b->q[(b->qhead + i) % b->qcap];
		if (r->owner == owner && r->file == file && r->blk == blk)
			return 1;
	}
	return 0;
}

static void *worker(void *arg);

/* Starts the workers on first use: not at creation, which happens before
 * the mount daemonizes (fork keeps only the calling thread). */
static void start_workers(struct ckpt_blocks *b)
{
	while (b->nworkers < b->want && !pthread_create(&b->tid[b->nworkers], NULL, worker, b))
		b->nworkers++;
	b->want = b->nworkers;
}

/* Notes a read of blk and queues the blocks after it when the file is read
 * forward.  Called with b->mu held. */
static void read_ahead(struct ckpt_blocks *b, const struct ckpt_block_src *src, void *owner,
		       uint32_t file, uint64_t blk)
{
	struct stream *st = NULL, *old = &b->st[0];
	if (b->want > b->nworkers)
		start_workers(b);
	if (!b->nworkers)
		return;
	for (int i = 0; i < NSTREAMS; i++) {
		if (b->st[i].owner == owner && b->st[i].file == file &&
		    (blk == b->st[i].last || blk == b->st[i].last + 1)) {
			st = &b->st[i];
			break;
		}
		if (b->st[i].used < old->used)
			old = &b->st[i];
	}
	if (!st) {  /* a new stream: read-ahead starts at its next block */
		*old = (struct stream){ .owner = owner, .file = file, .last = blk, .queued = blk,
					.used = ++b->clock };
		return;
	}
	st->last = blk;
	st->used = ++b->clock;
	/* the streams share half the pool: read-ahead that outruns it would be
	 * pushed out by other streams' blocks before it is read, and made twice */
	size_t active = 0;
	for (int i = 0; i < NSTREAMS; i++)
		active += b->st[i].owner && b->clock - b->st[i].used < 4 * (uint64_t)b->nslots;
	size_t ahead = b->nslots / 2 / (active ? active : 1);
	ahead = ahead < 1 ? 1 : ahead > b->ahead ? b->ahead : ahead;
	uint64_t from = st->queued > blk ? st->queued + 1 : blk + 1;
	for (uint64_t k = from; k <= blk + ahead; k++) {
		size_t len = src->length(owner, file, k);
		st->queued = k;
		if (!len || find(b, owner, file, k) || queued(b, owner, file, k))
			continue;
		if (b->qlen == b->qcap)
			break;
		b->q[(b->qhead + b->qlen++) % b->qcap] =
			(struct request){ .owner = owner, .src = src, .file = file, .blk = k };
		b->stats.issued++;
		pthread_cond_signal(&b->work);
	}
}

static void *worker(void *arg)
{
	struct ckpt_blocks *b = arg;
	pthread_mutex_lock(&b->mu);
	for (;;) {
		while (!b->stop && !b->qlen)
			pthread_cond_wait(&b->work, &b->mu);
		if (b->stop)
			break;
		struct request r = b->q[b->qhead];
		b->qhead = (b->qhead + 1) % b->qcap;
		b->qlen--;
		size_t len = r.src->length(r.owner, r.file, r.blk);
		struct slot *s;
		if (!len || find(b, r.owner, r.file, r.blk) || !(s = victim(b, 0)))
			continue;
		claim(b, s, &r, len, 1);
		struct ckpt_err e = { 0 };
		if (!make(b, s, &e))  /* a failed read-ahead is left to the reader */
			b->stats.made++;
	}
	pthread_mutex_unlock(&b->mu);
	return NULL;
}

int ckpt_blocks_new(struct ckpt_blocks **out, uint64_t budget, size_t block, int nworkers)
{
	struct ckpt_blocks *b = calloc(1, sizeof(*b));
	*out = NULL;
	if (!b)
		return -ENOMEM;
	b->block = block;
	b->nslots = budget / block < 4 ? 4 : (size_t)(budget / block);
	b->qcap = b->nslots;
	b->ahead = b->nslots / 2 < MAX_AHEAD ? b->nslots / 2 : MAX_AHEAD;
	if (!(b->slot = calloc(b->nslots, sizeof(*b->slot))) ||
	    !(b->q = calloc(b->qcap, sizeof(*b->q))) ||
	    (nworkers > 0 && !(b->tid = calloc((size_t)nworkers, sizeof(*b->tid))))) {
		free(b->slot);
		free(b->q);
		free(b);
		return -ENOMEM;
	}
	pthread_mutex_init(&b->mu, NULL);
	pthread_cond_init(&b->changed, NULL);
	pthread_cond_init(&b->work, NULL);
	b->want = nworkers > 0 ? nworkers : 0;
	*out = b;
	return 0;
}

void ckpt_blocks_free(struct ckpt_blocks *b)
{
	if (!b)
		return;
	pthread_mutex_lock(&b->mu);
	b->stop = 1;
	pthread_cond_broadcast(&b->work);
	pthread_mutex_unlock(&b->mu);
	for (int i = 0; i < b->nworkers; i++)
		pthread_join(b->tid[i], NULL);
	for (size_t i = 0; i < b->nslots; i++)
		free(b->slot[i].buf);
	pthread_mutex_destroy(&b->mu);
	pthread_cond_destroy(&b->changed);
	pthread_cond_destroy(&b->work);
	free(b->slot);
	free(b->q);
	free(b->tid);
	free(b);
}

int ckpt_blocks_read(struct ckpt_blocks *b, const struct ckpt_block_src *src, void *owner,
		     uint32_t file, uint64_t blk, size_t len, size_t off, size_t n, uint8_t *dst,
		     struct ckpt_err *e)
{
	struct request r = { .owner = owner, .src = src, .file = file, .blk = blk };
	struct slot *s;
	int rc = 0;

	pthread_mutex_lock(&b->mu);
	while ((s = find(b, owner, file, blk)) && s->state == SLOT_BUSY) {
		b->stats.waits++;
		pthread_cond_wait(&b->changed, &b->mu);
	}
	if (s) {
		if (s->ahead) {
			b->stats.hits++;
			s->ahead = 0;
		}
	} else if ((s = victim(b, 1))) {
		claim(b, s, &r, len, 0);
		rc = make(b, s, e);
	} else {  /* every slot taken: make the block privately, keep nothing */
		uint8_t *tmp = malloc(len);
		pthread_mutex_unlock(&b->mu);
		rc = tmp ? src->fill(owner, file, blk, tmp, len, e)
			 : ckpt_err_set(e, -ENOMEM, "out of memory");
		if (!rc)
			memcpy(dst, tmp + off, n);
		free(tmp);
		pthread_mutex_lock(&b->mu);
	}
	if (s && !rc) {
		s->refs++;
		s->used = ++b->clock;
		pthread_mutex_unlock(&b->mu);
		memcpy(dst, s->buf + off, n);
		pthread_mutex_lock(&b->mu);
		if (!--s->refs)
			pthread_cond_broadcast(&b->changed);  /* ckpt_blocks_forget waits for it */
	}
	if (!rc)
		read_ahead(b, src, owner, file, blk);
	pthread_mutex_unlock(&b->mu);
	return rc;
}

void ckpt_blocks_note(struct ckpt_blocks *b, const struct ckpt_block_src *src, void *owner,
		      uint32_t file, uint64_t blk)
{
	pthread_mutex_lock(&b->mu);
	read_ahead(b, src, owner, file, blk);
	pthread_mutex_unlock(&b->mu);
}

void ckpt_blocks_forget(struct ckpt_blocks *b, void *owner)
{
	pthread_mutex_lock(&b->mu);
	size_t kept = 0;
	for (size_t i = 0; i < b->qlen; i++) {
		struct request r = b->q[(b->qhead + i) % b->qcap];
		if (r.owner != owner)
			b->q[(b->qhead + kept++) % b->qcap] = r;
	}
	b->qlen = kept;
	for (int i = 0; i < NSTREAMS; i++)
		if (b->st[i].owner == owner)
			b->st[i] = (struct stream){ 0 };
	for (size_t i = 0; i < b->nslots; i++) {
		struct slot *s = &b->slot[i];
		while (s->owner == owner && (s->state == SLOT_BUSY || s->refs))
			pthread_cond_wait(&b->changed, &b->mu);
		if (s->owner == owner) {
			s->state = SLOT_FREE;
			s->owner = NULL;
		}
	}
	pthread_mutex_unlock(&b->mu);
}

void ckpt_blocks_stats(struct ckpt_blocks *b, struct ckpt_blocks_stats *s)
{
	pthread_mutex_lock(&b->mu);
	*s = b->stats;
	pthread_mutex_unlock(&b->mu);
}

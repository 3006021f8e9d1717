/* blocks.h - ready blocks and read-ahead workers.
 *
 * A pool of fixed-size block buffers, shared by every engine of a process,
 * holds blocks of served bytes that cost work to make (see engine.c: dtype
 * conversion, transposes, compressed or strided items).  A read of such a
 * block is answered from the pool when the block is there, waits when a
 * worker is making it, and makes it otherwise.  When reads of a file go
 * forward block by block, the next blocks are queued for worker threads,
 * so that a sequential reader (cp, or the page faults of an mmap) finds
 * them ready.  Memory is bounded by the budget given at creation; blocks
 * are reused least recently used first, read-ahead blocks not yet read
 * last. */
#ifndef CKPT_BLOCKS_H
#define CKPT_BLOCKS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct ckpt_blocks;

/* What the pool asks of a block's owner (an engine). */
struct ckpt_block_src {
	/* Length of block blk of file when it is one the pool keeps, else 0
	 * (past the end, or costs nothing to read directly). */
	size_t (*length)(void *owner, uint32_t file, uint64_t blk);
	/* Makes block blk of file: exactly len bytes into buf.  Thread-safe. */
	int (*fill)(void *owner, uint32_t file, uint64_t blk, uint8_t *buf, size_t len,
		    struct ckpt_err *e);
};

struct ckpt_blocks_stats {
	uint64_t issued;     /* blocks queued for read-ahead */
	uint64_t made;       /* ... made by the workers */
	uint64_t hits;       /* reads answered from a read-ahead block */
	uint64_t waits;      /* reads that waited for a block being made */
};

/* Creates a pool of budget bytes of block-byte buffers (at least 4) with
 * nworkers read-ahead threads (0: no read-ahead, blocks are still kept),
 * started on first use, so the pool may be made before a fork. */
int ckpt_blocks_new(struct ckpt_blocks **out, uint64_t budget, size_t block, int nworkers);

/* Stops the workers and frees the pool (NULL is fine).  No read may be in
 * progress. */
void ckpt_blocks_free(struct ckpt_blocks *b);

/* Copies bytes [off, off+n) of block blk (len bytes long) of file of owner
 * into dst, from the pool or by making the block with src->fill; then
 * queues read-ahead when reads of this file go forward.  Thread-safe. */
int ckpt_blocks_read(struct ckpt_blocks *b, const struct ckpt_block_src *src, void *owner,
		     uint32_t file, uint64_t blk, size_t len, size_t off, size_t n, uint8_t *dst,
		     struct ckpt_err *e);

/* Notes that block blk of file of owner was read without the pool (it
 * costs nothing), so that read-ahead follows a reader across such blocks.
 * Thread-safe. */
void ckpt_blocks_note(struct ckpt_blocks *b, const struct ckpt_block_src *src, void *owner,
		      uint32_t file, uint64_t blk);

/* Drops every block and queued request of owner, waiting for blocks of it
 * being made.  Call before the owner goes away.  Thread-safe. */
void ckpt_blocks_forget(struct ckpt_blocks *b, void *owner);

/* A snapshot of the counters.  Thread-safe. */
void ckpt_blocks_stats(struct ckpt_blocks *b, struct ckpt_blocks_stats *s);

#endif

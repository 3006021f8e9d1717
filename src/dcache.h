/* dcache.h - the on-disk block cache: blocks of served bytes that cost work
 * to make (converted dtypes, transposes, decompressed or strided items),
 * kept across mounts.
 *
 * Layout of a cache directory:
 *   DIR/lock                 flock()ed by the one daemon using DIR
 *   DIR/<key>/source         the checkpoint path, for people
 *   DIR/<key>/<file>-<block> one block: a 32-byte header (magic, file, block,
 *                            length, XXH3-64 checksum of the payload seeded
 *                            with the key, file and block) then the payload
 * <key> is 32 hex digits naming everything that decides the bytes (see
 * cachekey.h).  Blocks are written to a temporary name and renamed into
 * place, so a reader sees a whole block or none; a block whose header or
 * checksum does not match (torn write, bit rot, tampering) is a miss: it is
 * removed and recomputed, never served.  The total size is capped and a
 * free-space floor is kept on the file system, evicting the least recently
 * used blocks of any key first. */
#ifndef CKPT_DCACHE_H
#define CKPT_DCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct ckpt_dcache;

struct ckpt_dcache_stats {
	uint64_t hits, misses;   /* lookups answered from disk / not */
	uint64_t corrupt;        /* blocks that failed their check (then removed) */
	uint64_t writes;         /* blocks stored */
	uint64_t write_skips;    /* blocks not stored: no room, or a write error */
	uint64_t evictions;      /* blocks removed to respect the cap or the floor */
	uint64_t bytes;          /* bytes now held (headers included) */
	uint64_t blocks;         /* blocks now held */
};

/* Opens (creating it 0700 if needed) the cache directory dir, capped at
 * cap bytes, keeping at least floor bytes free on its file system.  Takes
 * an exclusive lock on DIR/lock: -EBUSY when another process holds it.
 * Scans what earlier runs left (temporary files from an interrupted write
 * are removed) and evicts down to the cap. */
int ckpt_dcache_open(struct ckpt_dcache **out, const char *dir, uint64_t cap, uint64_t floor,
		     struct ckpt_err *e);

/* Releases the lock and frees c (NULL is fine). */
void ckpt_dcache_close(struct ckpt_dcache *c);

/* Registers key (32 hex digits) for source (recorded in DIR/<key>/source)
 * and returns its handle (>= 0) or -errno.  Thread-safe. */
int ckpt_dcache_attach(struct ckpt_dcache *c, const char *key, const char *source);

/* Reads block blk of file of key handle k into dst, which must be exactly
 * len bytes long.  0 on a verified hit; -ENOENT on a miss (absent, or
 * present but failing its check, in which case it is removed).
 * Thread-safe. */
int ckpt_dcache_get(struct ckpt_dcache *c, int k, uint32_t file, uint64_t blk, uint8_t *dst,
		    size_t len);

/* Stores len bytes of src as block blk of file of key handle k, evicting
 * older blocks as needed.  Best effort: returns 0 when stored, -ENOSPC when
 * there is no room within the cap and the floor, or the write's -errno.
 * Thread-safe. */
int ckpt_dcache_put(struct ckpt_dcache *c, int k, uint32_t file, uint64_t blk, const uint8_t *src,
		    size_t len);

/* A snapshot of the counters.  Thread-safe. */
void ckpt_dcache_stats(struct ckpt_dcache *c, struct ckpt_dcache_stats *s);

/* The directory c was opened on. */
const char *ckpt_dcache_dir(const struct ckpt_dcache *c);

#endif

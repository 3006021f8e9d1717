/* test-cache.c - the on-disk block cache (dcache.c) and the block pool with
 * its read-ahead workers (blocks.c).  TAP. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../src/blocks.h"
#include "../../src/dcache.h"
#include "../../src/err.h"
#include "tap.h"

#define KEY "0123456789abcdef0123456789abcdef"
#define BLEN 1000

static char root[256];

static void pattern(uint8_t *p, size_t n, uint32_t file, uint64_t blk)
{
	uint32_t x = file * 2654435761u ^ (uint32_t)blk * 40503u ^ 0x9e3779b9u;
	for (size_t i = 0; i < n; i++) {
		x = x * 1103515245u + 12345u;
		p[i] = (uint8_t)(x >> 16);
	}
}

static int has_pattern(const uint8_t *p, size_t n, uint32_t file, uint64_t blk)
{
	uint8_t *q = malloc(n);
	pattern(q, n, file, blk);
	int same = !memcmp(p, q, n);
	free(q);
	return same;
}

static int put(struct ckpt_dcache *c, int k, uint32_t file, uint64_t blk)
{
	uint8_t b[BLEN];
	pattern(b, sizeof(b), file, blk);
	return ckpt_dcache_put(c, k, file, blk, b, sizeof(b));
}

static int get_ok(struct ckpt_dcache *c, int k, uint32_t file, uint64_t blk)
{
	uint8_t b[BLEN];
	return ckpt_dcache_get(c, k, file, blk, b, sizeof(b)) == 0 && has_pattern(b, sizeof(b), file, blk);
}

static void block_file(char *buf, size_t n, uint32_t file, uint64_t blk)
{
	snprintf(buf, n, "%s/cache/" KEY "/%u-%llu", root, file, (unsigned long long)blk);
}

static void flip_byte(const char *path, off_t at)
{
	int fd = open(path, O_RDWR);
	uint8_t b = 0;
	if (fd < 0)
		return;
	if (pread(fd, &b, 1, at) == 1) {
		b ^= 0x40;
		if (pwrite(fd, &b, 1, at) != 1)
			perror("pwrite");
	}
	close(fd);
}

static void test_dcache(void)
{
	struct ckpt_dcache *c, *c2;
	struct ckpt_dcache_stats st;
	struct ckpt_err e = { 0 };
	char dir[300], path[400];
	struct stat sb;
	uint64_t one = 32 + BLEN;

	snprintf(dir, sizeof(dir), "%s/cache", root);
	ok(ckpt_dcache_open(&c, dir, 3 * one, 0, &e) == 0, "dcache: opens (creating) %s", dir);
	ok(stat(dir, &sb) == 0 && (sb.st_mode & 0777) == 0700, "dcache: the directory is mode 0700");
	ckpt_err_clear(&e);
	ok(ckpt_dcache_open(&c2, dir, one, 0, &e) == -EBUSY && strstr(e.msg, "in use by another") &&
	   strstr(e.msg, "pid "), "dcache: a second open is refused: %s", e.msg);
	ok(ckpt_dcache_attach(c, "not-a-key", "/x") == -EINVAL, "dcache: a malformed key is refused");
	int k = ckpt_dcache_attach(c, KEY, "/some/checkpoint");
	ok(k >= 0, "dcache: attach gives a handle");

	uint8_t b[BLEN];
	ok(ckpt_dcache_get(c, k, 0, 0, b, sizeof(b)) == -ENOENT, "dcache: a block never stored misses");
	ok(put(c, k, 0, 0) == 0 && get_ok(c, k, 0, 0), "dcache: a stored block reads back");
	ok(put(c, k, 0, 9) == 0 && ckpt_dcache_get(c, k, 0, 9, b, sizeof(b) - 1) == -ENOENT &&
	   ckpt_dcache_get(c, k, 0, 9, b, sizeof(b)) == -ENOENT,
	   "dcache: a block of another length is a miss, and is removed");

	/* LRU: 0 used after 1 and 2, so storing 3 over the 3-block cap evicts 1 */
	ok(put(c, k, 0, 1) == 0 && put(c, k, 0, 2) == 0 && get_ok(c, k, 0, 0) && put(c, k, 0, 3) == 0,
	   "dcache: four blocks stored under a cap of three");
	ckpt_dcache_stats(c, &st);
	ok(st.evictions == 1 && st.blocks == 3 && st.bytes == 3 * one,
	   "dcache: one eviction, 3 blocks, %llu bytes held", (unsigned long long)st.bytes);
	ok(get_ok(c, k, 0, 0) && get_ok(c, k, 0, 2) && get_ok(c, k, 0, 3) &&
	   ckpt_dcache_get(c, k, 0, 1, b, sizeof(b)) == -ENOENT,
	   "dcache: the least recently used block (1) was the one evicted");
	block_file(path, sizeof(path), 0, 1);
	ok(access(path, F_OK) != 0, "dcache: its file is gone");

	/* corruption: payload bit flip, truncation, a block under another name */
	block_file(path, sizeof(path), 0, 0);
	flip_byte(path, 32 + 500);
	ok(ckpt_dcache_get(c, k, 0, 0, b, sizeof(b)) == -ENOENT && access(path, F_OK) != 0,
	   "dcache: a flipped payload bit is a miss and the block is removed");
	block_file(path, sizeof(path), 0, 2);
	ok(truncate(path, 32 + BLEN / 2) == 0 && ckpt_dcache_get(c, k, 0, 2, b, sizeof(b)) == -ENOENT,
	   "dcache: a torn (short) block is a miss");
	char other[400];
	block_file(other, sizeof(other), 0, 3);
	ok(put(c, k, 0, 2) == 0 && rename(other, path) == 0 &&
	   ckpt_dcache_get(c, k, 0, 2, b, sizeof(b)) == -ENOENT,
	   "dcache: a valid block renamed to another block's name is a miss");
	ckpt_dcache_stats(c, &st);
	ok(st.corrupt == 4, "dcache: 4 corrupt blocks counted (%llu)", (unsigned long long)st.corrupt);

	/* reopen: what is on disk is found again; leftovers of a torn write go */
	ok(put(c, k, 1, 7) == 0 && put(c, k, 1, 8) == 0, "dcache: two more blocks stored");
	ckpt_dcache_close(c);
	snprintf(path, sizeof(path), "%s/" KEY "/tmp.42", dir);
	FILE *fp = fopen(path, "w");
	if (fp) {
		fputs("half a block", fp);
		fclose(fp);
	}
	ok(ckpt_dcache_open(&c, dir, 3 * one, 0, &e) == 0, "dcache: reopens after close");
	ckpt_dcache_stats(c, &st);
	ok(st.blocks == 2 && st.bytes == 2 * one, "dcache: the reopened cache holds the 2 blocks");
	ok(access(path, F_OK) != 0, "dcache: a temporary file left by an interrupted write is removed");
	k = ckpt_dcache_attach(c, KEY, "/some/checkpoint");
	ok(get_ok(c, k, 1, 7) && get_ok(c, k, 1, 8), "dcache: both read back after the reopen");
	ckpt_dcache_close(c);

	/* a free-space floor nothing can satisfy: blocks are not stored */
	ok(ckpt_dcache_open(&c, dir, 3 * one, UINT64_MAX / 4, &e) == 0,
	   "dcache: opens with a huge free-space floor");
	k = ckpt_dcache_attach(c, KEY, "/some/checkpoint");
	ok(put(c, k, 2, 0) == -ENOSPC, "dcache: a store that would break the floor is refused");
	ckpt_dcache_stats(c, &st);
	ok(st.write_skips == 1 && st.blocks == 0 && st.evictions == 2,
	   "dcache: skipped, after evicting everything it could (%llu evictions)",
	   (unsigned long long)st.evictions);
	ckpt_dcache_close(c);

	/* a directory others can write to is refused */
	ckpt_err_clear(&e);
	ok(chmod(dir, 0777) == 0 && ckpt_dcache_open(&c, dir, one, 0, &e) == -EPERM &&
	   strstr(e.msg, "not writable by group or others"),
	   "dcache: a group/world-writable directory is refused: %s", e.msg);
	chmod(dir, 0700);
}

/* ---- the block pool ---- */

#define NBLK 64
#define PLEN 4096

struct owner {
	int fills[NBLK];
	int fail_blk;         /* fill of this block fails with -EIO; -1 none */
	int slow;             /* usleep per fill */
};

static size_t o_length(void *owner, uint32_t file, uint64_t blk)
{
	(void)owner;
	return file == 0 && blk < NBLK && blk % 9 != 8 ? PLEN : 0;  /* every 9th costs nothing */
}

static int o_fill(void *owner, uint32_t file, uint64_t blk, uint8_t *buf, size_t len,
		  struct ckpt_err *e)
{
	struct owner *o = owner;
	if (o->slow)
		usleep((useconds_t)o->slow);
	if ((int)blk == __atomic_load_n(&o->fail_blk, __ATOMIC_SEQ_CST))
		return ckpt_err_set(e, -EIO, "block %llu: injected failure", (unsigned long long)blk);
	__atomic_fetch_add(&o->fills[blk], 1, __ATOMIC_SEQ_CST);
	pattern(buf, len, file, blk);
	return 0;
}

static const struct ckpt_block_src osrc = { o_length, o_fill };

struct rjob {
	struct ckpt_blocks *b;
	struct owner *o;
	unsigned seed;
	int bad;
};

static void *random_reader(void *arg)
{
	struct rjob *j = arg;
	uint8_t full[PLEN], part[PLEN];
	for (int i = 0; i < 400; i++) {
		uint64_t blk = (uint64_t)(rand_r(&j->seed) % NBLK);
		if (!o_length(j->o, 0, blk))
			continue;
		size_t off = (size_t)rand_r(&j->seed) % PLEN, n = (size_t)rand_r(&j->seed) % (PLEN - off) + 1;
		struct ckpt_err e = { 0 };
		pattern(full, PLEN, 0, blk);
		if (ckpt_blocks_read(j->b, &osrc, j->o, 0, blk, PLEN, off, n, part, &e) ||
		    memcmp(part, full + off, n))
			j->bad++;
	}
	return NULL;
}

static void test_blocks(void)
{
	struct ckpt_blocks *b;
	struct ckpt_blocks_stats st;
	struct owner o = { .fail_blk = -1, .slow = 200 };
	uint8_t buf[PLEN];
	int bad = 0;

	ok(ckpt_blocks_new(&b, 8 * PLEN, PLEN, 2) == 0, "blocks: a pool of 8 blocks, 2 workers");
	for (uint64_t k = 0; k < NBLK; k++) {
		struct ckpt_err e = { 0 };
		if (!o_length(&o, 0, k)) {
			ckpt_blocks_note(b, &osrc, &o, 0, k);
			continue;
		}
		for (size_t off = 0; off < PLEN; off += 1024)  /* 4 reads a block, like 128K in 1M */
			if (ckpt_blocks_read(b, &osrc, &o, 0, k, PLEN, off, 1024, buf + off, &e))
				bad++;
		bad += !has_pattern(buf, PLEN, 0, k);
	}
	ok(bad == 0, "blocks: a sequential reader gets every byte right");
	int made = 0, twice = 0;
	for (int k = 0; k < NBLK; k++) {
		made += o.fills[k] > 0;
		twice += o.fills[k] > 1;
	}
	ok(made == NBLK - NBLK / 9 && twice == 0, "blocks: each costly block made exactly once (%d, %d twice)",
	   made, twice);
	ckpt_blocks_stats(b, &st);
	ok(st.issued > 0 && st.made > 0 && st.hits > NBLK / 2,
	   "blocks: read-ahead ran ahead of it (%llu issued, %llu made, %llu hits, %llu waits)",
	   (unsigned long long)st.issued, (unsigned long long)st.made, (unsigned long long)st.hits,
	   (unsigned long long)st.waits);

	/* several threads at random offsets */
	o.slow = 0;
	ckpt_blocks_forget(b, &o);
	struct rjob j[4];
	pthread_t t[4];
	for (int i = 0; i < 4; i++) {
		j[i] = (struct rjob){ .b = b, .o = &o, .seed = 17u + (unsigned)i };
		pthread_create(&t[i], NULL, random_reader, &j[i]);
	}
	bad = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		bad += j[i].bad;
	}
	ok(bad == 0, "blocks: 4 threads x 400 random reads, every byte right");

	/* a failing block fails that read only, and nothing bad is kept */
	struct ckpt_err e = { 0 };
	ckpt_blocks_forget(b, &o);
	__atomic_store_n(&o.fail_blk, 5, __ATOMIC_SEQ_CST);
	ok(ckpt_blocks_read(b, &osrc, &o, 0, 5, PLEN, 0, PLEN, buf, &e) == -EIO &&
	   strstr(e.msg, "injected failure"), "blocks: a failing fill fails the read: %s", e.msg);
	ckpt_err_clear(&e);
	ok(ckpt_blocks_read(b, &osrc, &o, 0, 4, PLEN, 0, PLEN, buf, &e) == 0 &&
	   has_pattern(buf, PLEN, 0, 4), "blocks: another block still reads");
	__atomic_store_n(&o.fail_blk, -1, __ATOMIC_SEQ_CST);
	ok(ckpt_blocks_read(b, &osrc, &o, 0, 5, PLEN, 0, PLEN, buf, &e) == 0 &&
	   has_pattern(buf, PLEN, 0, 5), "blocks: once the fault is gone the block reads right");
	ckpt_blocks_forget(b, &o);
	ckpt_blocks_free(b);

	/* no workers: blocks are kept, nothing is read ahead */
	struct owner o2 = { .fail_blk = -1 };
	ok(ckpt_blocks_new(&b, 0, PLEN, 0) == 0, "blocks: a pool without workers");
	for (uint64_t k = 0; k < 4; k++)
		ckpt_blocks_read(b, &osrc, &o2, 0, k, PLEN, 0, 10, buf, &e);
	ckpt_blocks_read(b, &osrc, &o2, 0, 0, PLEN, 0, 10, buf, &e);
	ckpt_blocks_stats(b, &st);
	ok(st.issued == 0 && o2.fills[0] == 1 && o2.fills[4] == 0,
	   "blocks: kept block 0 is reused, nothing read ahead");
	ckpt_blocks_free(b);
}

int main(void)
{
	snprintf(root, sizeof(root), "/tmp/ckptfs-test-cache-XXXXXX");
	if (!mkdtemp(root)) {
		printf("1..0 # SKIP cannot make a temporary directory\n");
		return 77;
	}
	ckpt_warn_set_quiet(1);
	test_dcache();
	test_blocks();
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", root);
	return tap_done();
}

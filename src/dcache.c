/* dcache.c - see dcache.h.
 *
 * In memory: every block file of the directory is an entry (key, file,
 * block, size) in one open-addressing hash table and one LRU list, both
 * guarded by c->mu.  File I/O happens outside the lock, except unlink()
 * during eviction.  An entry being written is "pending": lookups treat it
 * as absent and eviction skips it. */
#include "config.h"
#include "dcache.h"
#include "dirlist.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>
#include <xxhash.h>

#define KEY_LEN 32
#define TOMB UINT32_MAX

struct blkhdr {
	char magic[8];
	uint32_t file, len;
	uint64_t blk;
	uint64_t sum;
};
_Static_assert(sizeof(struct blkhdr) == 32, "block header is 32 bytes");
static const char MAGIC[8] = "CKPTBLK1";

struct entry {
	uint32_t key, file;
	uint64_t blk, size;
	int64_t mtime;       /* used while scanning only */
	uint32_t prev, next; /* LRU list; ent[0] is the sentinel */
	int pending;
};

struct ckpt_dcache {
	pthread_mutex_t mu;
	char *dir;
	int dfd, lockfd;
	uint64_t cap, floor;
	char (*keys)[KEY_LEN + 1];
	uint64_t *keyhash;
	size_t nkeys;
	struct entry *ent;   /* ent[0]: LRU sentinel */
	uint32_t nent, capent, freelist;
	uint32_t *ht;        /* entry indices; 0 empty, TOMB deleted */
	size_t htcap, htused;
	uint64_t tmpseq;
	pid_t pid;           /* recorded in the lock file */
	struct ckpt_dcache_stats st;
};

static uint64_t mix(uint32_t key, uint32_t file, uint64_t blk)
{
	uint64_t h = blk * 0x9E3779B97F4A7C15ull ^ (((uint64_t)file << 32 | key) * 0xC2B2AE3D27D4EB4Full);
	return h ^ h >> 29;
}

/* Slot of (key, file, blk), or of the first free slot when absent. */
static size_t ht_slot(struct ckpt_dcache *c, uint32_t key, uint32_t file, uint64_t blk, int *found)
{
	size_t m = c->htcap - 1, i = mix(key, file, blk) & m, tomb = SIZE_MAX;
	for (;; i = (i + 1) & m) {
		uint32_t x = c->ht[i];
		if (x == 0) {
			*found = 0;
			return tomb != SIZE_MAX ? tomb : i;
		}
		if (x == TOMB) {
			if (tomb == SIZE_MAX)
				tomb = i;
			continue;
		}
		if (c->ent[x].key == key && c->ent[x].file == file && c->ent[x].blk == blk) {
			*found = 1;
			return i;
		}
	}
}

static int ht_rebuild(struct ckpt_dcache *c, size_t cap)
{
	uint32_t *ht = calloc(cap, sizeof(*ht)), *old = c->ht;
	size_t oldcap = c->htcap;
	if (!ht)
		return -ENOMEM;
	c->ht = ht;
	c->htcap = cap;
	c->htused = 0;
	for (size_t i = 0; i < oldcap; i++) {
		uint32_t x = old[i];
		int found;
		if (x == 0 || x == TOMB)
			continue;
		ht[ht_slot(c, c->ent[x].key, c->ent[x].file, c->ent[x].blk, &found)] = x;
		c->htused++;
	}
	free(old);
	return 0;
}

static uint32_t find(struct ckpt_dcache *c, uint32_t key, uint32_t file, uint64_t blk)
{
	int found;
	size_t i = ht_slot(c, key, file, blk, &found);
	return found ? c->ht[i] : 0;
}

static void lru_unlink(struct ckpt_dcache *c, uint32_t x)
{
	c->ent[c->ent[x].prev].next = c->ent[x].next;
	c->ent[c->ent[x].next].prev = c->ent[x].prev;
}

static void lru_append(struct ckpt_dcache *c, uint32_t x)  /* as the newest */
{
	c->ent[x].prev = c->ent[0].prev;
	c->ent[x].next = 0;
	c->ent[c->ent[0].prev].next = x;
	c->ent[0].prev = x;
}

/* Adds an entry (newest in the LRU order); 0 when out of memory. */
static uint32_t add(struct ckpt_dcache *c, uint32_t key, uint32_t file, uint64_t blk, uint64_t size)
{
	uint32_t x;
	int found;

	if ((c->htused + 1) * 10 > c->htcap * 7) {  /* rebuilt without tombstones */
		size_t cap = 4096;
		while (cap * 7 < (c->st.blocks + 1) * 20)
			cap *= 2;
		if (ht_rebuild(c, cap))
			return 0;
	}
	if (c->freelist) {
		x = c->freelist;
		c->freelist = c->ent[x].next;
	} else {
		if (c->nent == c->capent) {
			uint32_t nc = c->capent * 2;
			struct entry *ne = realloc(c->ent, nc * sizeof(*ne));
			if (!ne)
				return 0;
			c->ent = ne;
			c->capent = nc;
		}
		x = c->nent++;
	}
	c->ent[x] = (struct entry){ .key = key, .file = file, .blk = blk, .size = size };
	size_t i = ht_slot(c, key, file, blk, &found);
	if (c->ht[i] == 0)
		c->htused++;
	c->ht[i] = x;
	lru_append(c, x);
	c->st.bytes += size;
	c->st.blocks++;
	return x;
}

static void drop(struct ckpt_dcache *c, uint32_t x)
{
	int found;
	size_t i = ht_slot(c, c->ent[x].key, c->ent[x].file, c->ent[x].blk, &found);
	if (found)
		c->ht[i] = TOMB;
	lru_unlink(c, x);
	c->st.bytes -= c->ent[x].size;
	c->st.blocks--;
	c->ent[x].next = c->freelist;
	c->freelist = x;
}

static void block_path(const struct ckpt_dcache *c, uint32_t key, uint32_t file, uint64_t blk,
		       char *buf, size_t n)
{
	snprintf(buf, n, "%s/%u-%llu", c->keys[key], file, (unsigned long long)blk);
}

/* Removes the least recently used block that is not being written; 0 when
 * there is none.  Called with c->mu held. */
static int evict_one(struct ckpt_dcache *c)
{
	for (uint32_t x = c->ent[0].next; x != 0; x = c->ent[x].next) {
		char path[128];
		if (c->ent[x].pending)
			continue;
		block_path(c, c->ent[x].key, c->ent[x].file, c->ent[x].blk, path, sizeof(path));
		unlinkat(c->dfd, path, 0);
		drop(c, x);
		c->st.evictions++;
		return 1;
	}
	return 0;
}

static uint64_t free_bytes(struct ckpt_dcache *c)
{
	struct statvfs sv;
	if (fstatvfs(c->dfd, &sv) < 0)
		return UINT64_MAX;  /* unknown: rely on the cap and on write errors */
	return (uint64_t)sv.f_bavail * sv.f_frsize;
}

static int is_key(const char *s)
{
	if (strlen(s) != KEY_LEN)
		return 0;
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return 0;
	return 1;
}

/* Key handle of k, adding it when new; -ENOMEM.  Called with c->mu held. */
static int key_handle(struct ckpt_dcache *c, const char *k)
{
	for (size_t i = 0; i < c->nkeys; i++)
		if (!strcmp(c->keys[i], k))
			return (int)i;
	char (*nk)[KEY_LEN + 1] = realloc(c->keys, (c->nkeys + 1) * sizeof(*nk));
	if (!nk)
		return -ENOMEM;
	c->keys = nk;
	uint64_t *nh = realloc(c->keyhash, (c->nkeys + 1) * sizeof(*nh));
	if (!nh)
		return -ENOMEM;
	c->keyhash = nh;
	memcpy(c->keys[c->nkeys], k, KEY_LEN + 1);
	c->keyhash[c->nkeys] = XXH3_64bits(k, KEY_LEN);
	return (int)c->nkeys++;
}

static uint64_t block_seed(const struct ckpt_dcache *c, uint32_t key, uint32_t file, uint64_t blk)
{
	uint64_t v[3] = { c->keyhash[key], file, blk };
	return XXH3_64bits(v, sizeof(v));
}

static int by_mtime(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	return (x->mtime > y->mtime) - (x->mtime < y->mtime);
}

/* Parses "<file>-<block>" strictly. */
static int parse_block_name(const char *s, uint32_t *file, uint64_t *blk)
{
	char *end;
	if (*s < '0' || *s > '9')
		return -1;
	unsigned long f = strtoul(s, &end, 10);
	if (*end != '-' || f > UINT32_MAX || end[1] < '0' || end[1] > '9')
		return -1;
	unsigned long long b = strtoull(end + 1, &end, 10);
	if (*end)
		return -1;
	*file = (uint32_t)f;
	*blk = b;
	return 0;
}

/* Collects the blocks of key directory kname into *list. */
static int scan_key(struct ckpt_dcache *c, const char *kname, struct entry **list, size_t *n,
		    size_t *cap)
{
	int kfd = openat(c->dfd, kname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d;
	struct dirent *de;
	int k = key_handle(c, kname);

	if (k < 0 || kfd < 0) {
		if (kfd >= 0)
			close(kfd);
		return k < 0 ? k : 0;
	}
	if (!(d = fdopendir(kfd))) {
		close(kfd);
		return -errno;
	}
	while ((de = readdir(d))) {
		struct stat sb;
		uint32_t file;
		uint64_t blk;
		if (!strncmp(de->d_name, "tmp.", 4)) {  /* an interrupted write */
			unlinkat(kfd, de->d_name, 0);
			continue;
		}
		if (parse_block_name(de->d_name, &file, &blk) ||
		    fstatat(kfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(sb.st_mode))
			continue;
		if (*n == *cap) {
			size_t nc = *cap ? *cap * 2 : 256;
			struct entry *nl = realloc(*list, nc * sizeof(*nl));
			if (!nl) {
				closedir(d);
				return -ENOMEM;
			}
			*list = nl;
			*cap = nc;
		}
		(*list)[(*n)++] = (struct entry){
			.key = (uint32_t)k, .file = file, .blk = blk, .size = (uint64_t)sb.st_size,
			.mtime = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec,
		};
	}
	closedir(d);
	return 0;
}

/* Loads what earlier runs left, oldest first in the LRU order. */
static int scan(struct ckpt_dcache *c)
{
	int fd = dup(c->dfd), rc = 0;
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	struct entry *list = NULL;
	size_t n = 0, cap = 0;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	while (!rc && (de = readdir(d)))
		if (is_key(de->d_name))
			rc = scan_key(c, de->d_name, &list, &n, &cap);
	closedir(d);
	if (!rc && n)
		qsort(list, n, sizeof(*list), by_mtime);
	for (size_t i = 0; i < n && !rc; i++)
		if (!add(c, list[i].key, list[i].file, list[i].blk, list[i].size))
			rc = -ENOMEM;
	free(list);
	return rc;
}

/* The directory must be ours and closed to others: blocks in it are served
 * as file contents, so nobody else may be able to plant one. */
static int check_owner(int dfd, const char *dir, struct ckpt_err *e)
{
	struct stat sb;
	if (fstat(dfd, &sb) < 0)
		return ckpt_err_set(e, -errno, "cache directory %s: %s", dir, strerror(errno));
	if (sb.st_uid != geteuid() || (sb.st_mode & 022))
		return ckpt_err_set(e, -EPERM, "cache directory %s: must be owned by uid %u and not "
				    "writable by group or others (it is uid %u, mode %03o)", dir,
				    (unsigned)geteuid(), (unsigned)sb.st_uid,
				    (unsigned)(sb.st_mode & 0777));
	return 0;
}

/* Writes our pid into the lock file (again after the mount daemonizes: the
 * lock, held by the open file, passes to the child). */
static void record_pid(struct ckpt_dcache *c)
{
	char pid[32];
	int len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	c->pid = getpid();
	if (ftruncate(c->lockfd, 0) < 0 || pwrite(c->lockfd, pid, (size_t)len, 0) != len)
		ckpt_warn("cache directory %s: cannot record the pid in its lock", c->dir);
}

static int take_lock(struct ckpt_dcache *c, struct ckpt_err *e)
{
	char pid[32];
	c->lockfd = openat(c->dfd, "lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (c->lockfd < 0)
		return ckpt_err_set(e, -errno, "cache directory %s: cannot open lock: %s", c->dir,
				    strerror(errno));
	if (flock(c->lockfd, LOCK_EX | LOCK_NB) < 0) {
		int err = errno;
		ssize_t r = pread(c->lockfd, pid, sizeof(pid) - 1, 0);
		pid[r > 0 ? r : 0] = 0;
		pid[strcspn(pid, "\n")] = 0;
		if (err == EWOULDBLOCK)
			return ckpt_err_set(e, -EBUSY, "cache directory %s is in use by another "
					    "ckptfs (pid %s)", c->dir, pid[0] ? pid : "?");
		return ckpt_err_set(e, -err, "cache directory %s: lock: %s", c->dir, strerror(err));
	}
	record_pid(c);
	return 0;
}

int ckpt_dcache_open(struct ckpt_dcache **out, const char *dir, uint64_t cap, uint64_t floor,
		     struct ckpt_err *e)
{
	struct ckpt_dcache *c = calloc(1, sizeof(*c));
	int rc;

	*out = NULL;
	if (!c || !(c->dir = strdup(dir)) || !(c->ent = calloc(1024, sizeof(*c->ent))) ||
	    !(c->ht = calloc(4096, sizeof(*c->ht)))) {
		rc = ckpt_err_set(e, -ENOMEM, "out of memory");
		goto fail;
	}
	c->dfd = c->lockfd = -1;
	c->capent = 1024;
	c->nent = 1;   /* the sentinel */
	c->htcap = 4096;
	c->cap = cap;
	c->floor = floor;
	pthread_mutex_init(&c->mu, NULL);
	if ((rc = ckpt_mkdir_p(dir, 0700))) {
		ckpt_err_set(e, rc, "cache directory %s: cannot create: %s", dir, strerror(-rc));
		goto fail;
	}
	if ((c->dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		rc = ckpt_err_set(e, -errno, "cache directory %s: %s", dir, strerror(errno));
		goto fail;
	}
	if ((rc = check_owner(c->dfd, dir, e)) || (rc = take_lock(c, e)))
		goto fail;
	if ((rc = scan(c))) {
		ckpt_err_set(e, rc, "cache directory %s: cannot read it: %s", dir, strerror(-rc));
		goto fail;
	}
	while (c->st.bytes > c->cap && evict_one(c))
		;
	*out = c;
	return 0;
fail:
	ckpt_dcache_close(c);
	return rc;
}

void ckpt_dcache_close(struct ckpt_dcache *c)
{
	if (!c)
		return;
	if (c->lockfd >= 0)
		close(c->lockfd);  /* releases the flock */
	if (c->dfd >= 0)
		close(c->dfd);
	if (c->ent)
		pthread_mutex_destroy(&c->mu);
	free(c->keys);
	free(c->keyhash);
	free(c->ent);
	free(c->ht);
	free(c->dir);
	free(c);
}

int ckpt_dcache_attach(struct ckpt_dcache *c, const char *key, const char *source)
{
	char path[KEY_LEN + 16];
	int k, fd;

	if (!is_key(key))
		return -EINVAL;
	pthread_mutex_lock(&c->mu);
	k = key_handle(c, key);
	pthread_mutex_unlock(&c->mu);
	if (k < 0)
		return k;
	if (mkdirat(c->dfd, key, 0700) < 0 && errno != EEXIST)
		return -errno;
	snprintf(path, sizeof(path), "%s/source", key);
	fd = openat(c->dfd, path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd >= 0) {
		size_t n = strlen(source);
		if (write(fd, source, n) != (ssize_t)n || write(fd, "\n", 1) != 1)
			ckpt_warn("cache directory %s: cannot write %s", c->dir, path);
		close(fd);
	}
	return k;
}

/* Forgets entry (k, file, blk) after a failed read, removing the file if it
 * is still the one that failed (ino). */
static void forget(struct ckpt_dcache *c, int k, uint32_t file, uint64_t blk, ino_t ino,
		   int corrupt)
{
	char path[128];
	struct stat sb;
	pthread_mutex_lock(&c->mu);
	uint32_t x = find(c, (uint32_t)k, file, blk);
	if (x && !c->ent[x].pending) {
		block_path(c, (uint32_t)k, file, blk, path, sizeof(path));
		if (corrupt && fstatat(c->dfd, path, &sb, AT_SYMLINK_NOFOLLOW) == 0 && sb.st_ino == ino)
			unlinkat(c->dfd, path, 0);
		drop(c, x);
	}
	if (corrupt)
		c->st.corrupt++;
	c->st.misses++;
	pthread_mutex_unlock(&c->mu);
}

int ckpt_dcache_get(struct ckpt_dcache *c, int k, uint32_t file, uint64_t blk, uint8_t *dst,
		    size_t len)
{
	char path[128];
	struct blkhdr h;
	struct stat sb;
	int fd, ok;

	pthread_mutex_lock(&c->mu);
	uint32_t x = find(c, (uint32_t)k, file, blk);
	if (!x || c->ent[x].pending) {
		c->st.misses++;
		pthread_mutex_unlock(&c->mu);
		return -ENOENT;
	}
	block_path(c, (uint32_t)k, file, blk, path, sizeof(path));
	uint64_t seed = block_seed(c, (uint32_t)k, file, blk);
	pthread_mutex_unlock(&c->mu);

	if ((fd = openat(c->dfd, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
		forget(c, k, file, blk, 0, 0);
		return -ENOENT;
	}
	struct iovec iov[2] = { { &h, sizeof(h) }, { dst, len } };
	ok = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && (uint64_t)sb.st_size == sizeof(h) + len &&
	     preadv(fd, iov, 2, 0) == (ssize_t)(sizeof(h) + len) && !memcmp(h.magic, MAGIC, 8) &&
	     h.file == file && h.blk == blk && h.len == len &&
	     h.sum == XXH3_64bits_withSeed(dst, len, seed);
	if (ok)
		futimens(fd, NULL);  /* recently used, for the next run's LRU order too */
	close(fd);
	if (!ok) {
		forget(c, k, file, blk, sb.st_ino, 1);
		return -ENOENT;
	}
	pthread_mutex_lock(&c->mu);
	if ((x = find(c, (uint32_t)k, file, blk))) {
		lru_unlink(c, x);
		lru_append(c, x);
	}
	c->st.hits++;
	pthread_mutex_unlock(&c->mu);
	return 0;
}

/* Makes room for size more bytes; 0 or -ENOSPC.  Called with c->mu held. */
static int make_room(struct ckpt_dcache *c, uint64_t size)
{
	if (size > c->cap)
		return -ENOSPC;
	while (c->st.bytes + size > c->cap)
		if (!evict_one(c))
			return -ENOSPC;
	while (free_bytes(c) < c->floor + size)
		if (!evict_one(c))
			return -ENOSPC;
	return 0;
}

static int write_block(struct ckpt_dcache *c, const char *tmp, const char *path,
		       const struct blkhdr *h, const uint8_t *src, size_t len)
{
	int fd = openat(c->dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	struct iovec iov[2] = { { (void *)h, sizeof(*h) }, { (void *)src, len } };
	ssize_t w = pwritev(fd, iov, 2, 0);
	int rc = w == (ssize_t)(sizeof(*h) + len) ? 0 : w < 0 ? -errno : -ENOSPC;
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (!rc && renameat(c->dfd, tmp, c->dfd, path) < 0)
		rc = -errno;
	if (rc)
		unlinkat(c->dfd, tmp, 0);
	return rc;
}

int ckpt_dcache_put(struct ckpt_dcache *c, int k, uint32_t file, uint64_t blk, const uint8_t *src,
		    size_t len)
{
	struct blkhdr h = { .file = file, .len = (uint32_t)len, .blk = blk };
	uint64_t size = sizeof(h) + len;
	char path[128], tmp[160];
	uint32_t x;
	int rc;

	memcpy(h.magic, MAGIC, 8);
	pthread_mutex_lock(&c->mu);
	if (c->pid != getpid())
		record_pid(c);
	block_path(c, (uint32_t)k, file, blk, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s/tmp.%llu", c->keys[k], (unsigned long long)++c->tmpseq);
	uint64_t seed = block_seed(c, (uint32_t)k, file, blk);
	pthread_mutex_unlock(&c->mu);
	h.sum = XXH3_64bits_withSeed(src, len, seed);  /* outside the lock: 1 MiB of hashing */
	pthread_mutex_lock(&c->mu);
	if ((x = find(c, (uint32_t)k, file, blk))) {
		if (c->ent[x].pending) {  /* another thread is writing it */
			pthread_mutex_unlock(&c->mu);
			return 0;
		}
		drop(c, x);
	}
	if ((rc = make_room(c, size)) || !(x = add(c, (uint32_t)k, file, blk, size))) {
		c->st.write_skips++;
		pthread_mutex_unlock(&c->mu);
		return rc ? rc : -ENOMEM;
	}
	c->ent[x].pending = 1;
	pthread_mutex_unlock(&c->mu);

	rc = write_block(c, tmp, path, &h, src, len);

	pthread_mutex_lock(&c->mu);
	if (rc) {
		drop(c, x);
		c->st.write_skips++;
	} else {
		c->ent[x].pending = 0;
		c->st.writes++;
	}
	pthread_mutex_unlock(&c->mu);
	return rc;
}

void ckpt_dcache_stats(struct ckpt_dcache *c, struct ckpt_dcache_stats *s)
{
	pthread_mutex_lock(&c->mu);
	*s = c->st;
	pthread_mutex_unlock(&c->mu);
}

const char *ckpt_dcache_dir(const struct ckpt_dcache *c)
{
	return c->dir;
}

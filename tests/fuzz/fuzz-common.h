/* fuzz-common.h - helpers shared by the ckptfs fuzz harnesses: a private
 * scratch directory per process, copying the fixed data files into it, and
 * reading every file of an engine's layout with consistency checks.
 *
 * Everything is static: each harness is one translation unit (plus replay.c
 * or libFuzzer's main). */
#ifndef CKPT_FUZZ_COMMON_H
#define CKPT_FUZZ_COMMON_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"
#include "err.h"

/* Where the fixed data files live; build.sh / replay.sh pass the source
 * tree's tests/fuzz/data, CKPTFS_FUZZ_DATA overrides it at run time. */
#ifndef CKPTFS_FUZZ_DATA
#define CKPTFS_FUZZ_DATA "tests/fuzz/data"
#endif

/* Per input: bytes read from one file at most (in windows), files read at
 * most.  Keeps one input well under a second even for layouts whose virtual
 * size is huge (allow_holes, stride-0 items). */
#define FZ_WINDOW     (96u << 10)
#define FZ_MAX_FILES  48

#define FZ_FN static __attribute__((unused))

static char fz_dir[PATH_MAX];

FZ_FN int fz_rm_one(const char *p, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb; (void)type; (void)ftw;
	remove(p);
	return 0;
}

FZ_FN void fz_cleanup(void)
{
	if (fz_dir[0])
		nftw(fz_dir, fz_rm_one, 16, FTW_DEPTH | FTW_PHYS);
	fz_dir[0] = '\0';
}

/* Removes the scratch directories of harness processes that died without
 * running their atexit handler (a crash, a timeout, an OOM kill). */
FZ_FN void fz_reap_stale(const char *base)
{
	DIR *d = opendir(base);
	struct dirent *de;
	if (!d)
		return;
	while ((de = readdir(d))) {
		long pid;
		char path[PATH_MAX];
		if (sscanf(de->d_name, "ckptfs-fuzz-%ld-", &pid) != 1 || pid <= 0 ||
		    (kill((pid_t)pid, 0) == -1 && errno != ESRCH) || kill((pid_t)pid, 0) == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", base, de->d_name);
		nftw(path, fz_rm_one, 16, FTW_DEPTH | FTW_PHYS);
	}
	closedir(d);
}

/* Creates the private scratch directory once per process (in /dev/shm when
 * it exists: the harnesses write a file per input).  Aborts on failure. */
FZ_FN const char *fz_scratch(void)
{
	if (fz_dir[0])
		return fz_dir;
	const char *bases[] = { "/dev/shm", getenv("TMPDIR"), "/tmp" };
	for (size_t i = 0; i < sizeof(bases) / sizeof(bases[0]); i++) {
		struct stat sb;
		if (!bases[i] || stat(bases[i], &sb) || !S_ISDIR(sb.st_mode) || access(bases[i], W_OK))
			continue;
		fz_reap_stale(bases[i]);
		snprintf(fz_dir, sizeof(fz_dir), "%s/ckptfs-fuzz-%ld-XXXXXX", bases[i], (long)getpid());
		if (mkdtemp(fz_dir)) {
			atexit(fz_cleanup);
			return fz_dir;
		}
	}
	perror("ckptfs fuzz: cannot create a scratch directory");
	abort();
}

FZ_FN void fz_write(const char *path, const uint8_t *data, size_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		perror(path);
		abort();
	}
	while (size > 0) {
		ssize_t w = write(fd, data, size);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			perror(path);
			abort();
		}
		data += w;
		size -= (size_t)w;
	}
	close(fd);
}

/* Copies the regular files and subdirectories of src into dst (recursive). */
FZ_FN void fz_copy_tree(const char *src, const char *dst)
{
	DIR *d = opendir(src);
	struct dirent *de;
	if (!d) {
		fprintf(stderr, "ckptfs fuzz: data directory %s: %s (the harness runs without "
			"data files)\n", src, strerror(errno));
		return;
	}
	while ((de = readdir(d))) {
		char s[PATH_MAX], t[PATH_MAX];
		struct stat sb;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(s, sizeof(s), "%s/%s", src, de->d_name);
		snprintf(t, sizeof(t), "%s/%s", dst, de->d_name);
		if (stat(s, &sb))
			continue;
		if (S_ISDIR(sb.st_mode)) {
			mkdir(t, 0755);
			fz_copy_tree(s, t);
		} else if (S_ISREG(sb.st_mode)) {
			FILE *f = fopen(s, "rb");
			if (!f)
				continue;
			uint8_t *buf = malloc((size_t)sb.st_size + 1);
			size_t n = buf ? fread(buf, 1, (size_t)sb.st_size, f) : 0;
			fclose(f);
			if (buf)
				fz_write(t, buf, n);
			free(buf);
		}
	}
	closedir(d);
}

/* The data directory for one harness: $CKPTFS_FUZZ_DATA/<name>. */
FZ_FN void fz_data_dir(const char *name, char *out, size_t n)
{
	const char *base = getenv("CKPTFS_FUZZ_DATA");
	snprintf(out, n, "%s/%s", base && *base ? base : CKPTFS_FUZZ_DATA, name);
}

FZ_FN uint64_t fz_hash(const uint8_t *data, size_t size)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < size; i++)
		h = (h ^ data[i]) * 1099511628211ull;
	return h;
}

/* Options derived from the input (deterministic, so crashers replay): the
 * fuzzer reaches every combination by mutating any byte.  Mapping stays
 * "auto" (rules chosen by the tensor names and the assets' config.json). */
FZ_FN void fz_opts(const uint8_t *data, size_t size, struct ckpt_opts *o)
{
	static const uint64_t shard[] = { 1, 4096, 5000ull * 1000 * 1000, 64 << 10 };
	static const uint64_t cache[] = { 0, 1, 64 << 10, 16 << 20 };
	uint64_t h = fz_hash(data, size);
	memset(o, 0, sizeof(*o));
	o->allow_holes = (int)(h & 1);
	o->keep_all = (int)((h >> 1) & 1);
	o->max_shard_size = shard[(h >> 2) & 3];
	o->cache_bytes = cache[(h >> 4) & 3];
	/* served dtype: as stored, or converted on read (floating tensors) */
	static const enum ckpt_dtype dts[] = { CKPT_DT_INVALID, CKPT_DT_INVALID, CKPT_DT_BF16,
					       CKPT_DT_F16, CKPT_DT_F32, CKPT_DT_INVALID,
					       CKPT_DT_INVALID, CKPT_DT_F32 };
	o->dtype = dts[(h >> 6) & 7];
	o->dtype_auto = ((h >> 6) & 7) == 5;  /* from the assets' config.json */
	o->mapping_lax = (int)((h >> 9) & 1);
}

#define FZ_CHECK(cond, ...)                                                         \
	do {                                                                        \
		if (!(cond)) {                                                      \
			fprintf(stderr, "ckptfs fuzz: invariant violated: %s: ", #cond); \
			fprintf(stderr, __VA_ARGS__);                               \
			fputc('\n', stderr);                                        \
			abort();                                                    \
		}                                                                   \
	} while (0)

FZ_FN int fz_cmp_pair(const void *x, const void *y)
{
	const uint64_t *a = x, *b = y;
	if (a[0] != b[0])
		return a[0] < b[0] ? -1 : 1;
	return a[1] < b[1] ? -1 : a[1] > b[1];
}

/* A weights file's header must be a valid safetensors header whose entries
 * tile the data section exactly (what safetensors' own loader checks). */
FZ_FN void fz_check_header(const struct ckpt_vfile *f)
{
	FZ_CHECK(f->head_len >= 8 && f->head_len <= f->size, "%s: head_len %llu size %llu", f->name,
		 (unsigned long long)f->head_len, (unsigned long long)f->size);
	uint64_t hl = 0;
	for (int i = 7; i >= 0; i--)
		hl = (hl << 8) | f->head[i];
	FZ_CHECK(hl + 8 == f->head_len, "%s: header length field %llu, head_len %llu", f->name,
		 (unsigned long long)hl, (unsigned long long)f->head_len);
	json_error_t je;
	json_t *root = json_loadb((const char *)f->head + 8, hl, 0, &je);
	FZ_CHECK(root && json_is_object(root), "%s: header is not a JSON object: %s", f->name,
		 root ? "other JSON" : je.text);
	size_t n = json_object_size(root), k = 0;
	uint64_t (*se)[2] = calloc(n ? n : 1, sizeof(*se));
	const char *key;
	json_t *v;
	FZ_CHECK(se != NULL, "out of memory");
	json_object_foreach(root, key, v) {
		if (!strcmp(key, "__metadata__"))
			continue;
		json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
		       *of = json_object_get(v, "data_offsets");
		FZ_CHECK(json_is_string(dt) && json_is_array(sh) && json_is_array(of) &&
			 json_array_size(of) == 2, "%s: entry '%s' malformed", f->name, key);
		size_t es = ckpt_dtype_size(ckpt_dtype_from_st(json_string_value(dt)));
		FZ_CHECK(es > 0, "%s: entry '%s': unknown dtype", f->name, key);
		uint64_t numel = 1;
		size_t i;
		json_t *d;
		json_array_foreach(sh, i, d) {
			FZ_CHECK(json_is_integer(d) && json_integer_value(d) >= 0, "%s: '%s' shape",
				 f->name, key);
			numel *= (uint64_t)json_integer_value(d);
		}
		json_int_t b = json_integer_value(json_array_get(of, 0));
		json_int_t e = json_integer_value(json_array_get(of, 1));
		FZ_CHECK(b >= 0 && e >= b && (uint64_t)(e - b) == numel * es,
			 "%s: entry '%s': data_offsets [%lld, %lld] for %llu elements of %zu bytes",
			 f->name, key, (long long)b, (long long)e, (unsigned long long)numel, es);
		se[k][0] = (uint64_t)b;
		se[k][1] = (uint64_t)e;
		k++;
	}
	qsort(se, k, sizeof(*se), fz_cmp_pair);
	uint64_t pos = 0;
	for (size_t i = 0; i < k; i++) {
		FZ_CHECK(se[i][0] == pos, "%s: data_offsets do not tile the data section (entry at "
			 "%llu, expected %llu)", f->name, (unsigned long long)se[i][0],
			 (unsigned long long)pos);
		pos = se[i][1];
	}
	FZ_CHECK(f->head_len + pos == f->size, "%s: entries end at %llu, file is %llu", f->name,
		 (unsigned long long)(f->head_len + pos), (unsigned long long)f->size);
	free(se);
	json_decref(root);
}

/* Reads [off, off+len) of file idx in pieces of `piece` bytes into out.
 * Returns 0, or -1 when a read failed (a refused item: allowed). */
FZ_FN int fz_read_range(struct ckpt_engine *g, size_t idx, uint64_t off, size_t len,
			 size_t piece, uint8_t *out)
{
	const struct ckpt_vfile *f = &g->layout.f[idx];
	size_t done = 0;
	while (done < len) {
		size_t want = len - done < piece ? len - done : piece, got = 12345;
		struct ckpt_err e = { 0 };
		int rc = ckpt_engine_read(g, idx, off + done, want, out + done, &got, &e);
		if (rc) {
			FZ_CHECK(rc < 0 && e.msg[0], "%s: failed read without a message (rc %d)",
				 f->name, rc);
			return -1;
		}
		FZ_CHECK(got == want, "%s: read %zu at %llu of %llu got %zu", f->name, want,
			 (unsigned long long)(off + done), (unsigned long long)f->size, got);
		done += got;
	}
	return 0;
}

/* Reads windows of every file (all of it when small) twice, with different
 * piece sizes (element-misaligned), and checks both give the same bytes. */
FZ_FN void fz_read_all(struct ckpt_engine *g)
{
	static uint8_t a[FZ_WINDOW], b[FZ_WINDOW];
	size_t nf = g->layout.n;

	for (size_t idx = 0; idx < nf; idx++) {
		if (idx >= FZ_MAX_FILES && idx + 1 < nf)
			continue;  /* the first ones and the last one (index) */
		const struct ckpt_vfile *f = &g->layout.f[idx];
		FZ_CHECK(ckpt_layout_find(&g->layout, f->name) == (int)idx, "%s: lookup", f->name);
		if (f->kind == CKPT_VF_WEIGHTS)
			fz_check_header(f);
		if (f->kind == CKPT_VF_INDEX) {
			json_error_t je;
			json_t *r = json_loadb((const char *)f->head, f->head_len, 0, &je);
			FZ_CHECK(r && json_is_object(json_object_get(r, "weight_map")),
				 "index is not JSON with a weight_map: %s", r ? "" : je.text);
			json_decref(r);
		}
		/* windows: the start, the middle, the end */
		uint64_t starts[3] = { 0, f->size / 2, f->size > FZ_WINDOW ? f->size - FZ_WINDOW : 0 };
		for (int w = 0; w < 3; w++) {
			if (w > 0 && f->size <= FZ_WINDOW)
				break;
			uint64_t off = starts[w];
			size_t len = f->size - off < FZ_WINDOW ? (size_t)(f->size - off) : FZ_WINDOW;
			int ra = fz_read_range(g, idx, off, len, FZ_WINDOW, a);
			int rb = fz_read_range(g, idx, off, len, 4093, b);
			if (ra == 0 && rb == 0)
				FZ_CHECK(memcmp(a, b, len) == 0, "%s: bytes at %llu+%zu differ between "
					 "read sizes", f->name, (unsigned long long)off, len);
		}
		/* at and past the end: no bytes, no error */
		size_t got = 1;
		struct ckpt_err e = { 0 };
		FZ_CHECK(ckpt_engine_read(g, idx, f->size, 16, a, &got, &e) == 0 && got == 0,
			 "%s: read at EOF", f->name);
	}
	size_t got = 0;
	struct ckpt_err e = { 0 };
	FZ_CHECK(ckpt_engine_read(g, nf, 0, 16, a, &got, &e) != 0, "read of a file past the layout");
}

#endif

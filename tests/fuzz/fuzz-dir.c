/* fuzz-dir.c - libFuzzer harness: the whole mount planner on a checkpoint
 * directory built from the input.  The input is a sequence of entries
 *
 *     kind (1 byte: 'l' a symlink, anything else a regular file)
 *     name length (1 byte), name
 *     content length (4 bytes, little endian; cut to what is left), content
 *
 * (at most 24 entries).  Names are reduced to [A-Za-z0-9._-] with at most
 * one '/' (one subdirectory level) and 64 bytes; a symlink's content is its
 * target, kept as given (it may point anywhere: "../bait", "/etc/passwd").
 * Entries whose name starts with "bait" are written next to the checkpoint
 * directory instead of into it: files a confined open must never reach.
 * The harness itself never follows a symlink when it writes (O_NOFOLLOW,
 * openat on a real subdirectory), so nothing is written outside.
 *
 * The directory is opened with ckpt_engine_open (catalogue from .metadata,
 * __R.metadata or safetensors headers, path confinement, items, coverage,
 * mapping, view, layout, assets), every file of the layout is read (windows,
 * twice with different read sizes, compared) and the engine is closed.
 * Invariant beyond the read checks: every data file the catalogue opened is
 * one of the regular files written inside the checkpoint directory (compared
 * by device and inode), so no path or symlink led outside it.  Options come
 * from a hash of the input.  tests/fuzz/make-seeds.py packs the shared
 * fixtures into this format (pack_dir). */
#define _GNU_SOURCE 1  /* nftw, mkdtemp */
#include "config.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz-common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ENTRIES 24
#define MAX_NAME 64

static char top[PATH_MAX], ckdir[PATH_MAX];
static struct { dev_t dev; ino_t ino; } written[MAX_ENTRIES];
static size_t nwritten;

/* Empties dir (the checkpoint directory, or the bait files in top). */
static int rm_entry(const char *p, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb; (void)type;
	if (ftw->level > 0)
		remove(p);
	return 0;
}

static void reset(void)
{
	DIR *d;
	struct dirent *de;
	nftw(ckdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	if ((d = opendir(top))) {
		while ((de = readdir(d)))
			if (!strncmp(de->d_name, "bait", 4)) {
				char p[PATH_MAX];
				snprintf(p, sizeof(p), "%s/%s", top, de->d_name);
				remove(p);
			}
		closedir(d);
	}
	nwritten = 0;
}

/* A safe entry name from raw bytes; 0 when nothing usable is left. */
static int clean_name(const uint8_t *raw, size_t n, char *out)
{
	static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
	size_t k = 0;
	int slash = 0;
	for (size_t i = 0; i < n && k < MAX_NAME; i++) {
		if (raw[i] == '/' && !slash && k > 0) {
			out[k++] = '/';
			slash = 1;
		} else if (raw[i] && strchr(ok, raw[i])) {
			out[k++] = (char)raw[i];
		}
	}
	out[k] = '\0';
	if (k == 0 || out[k - 1] == '/')
		return 0;
	/* no "." or ".." component */
	for (char *c = out; c;) {
		char *s = strchr(c, '/');
		size_t len = s ? (size_t)(s - c) : strlen(c);
		if ((len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
			return 0;
		c = s ? s + 1 : NULL;
	}
	return 1;
}

/* Creates one entry below base without ever following a symlink: the
 * subdirectory must be a real directory inside base, the entry must not
 * exist yet (a repeated name: the first one stays).  Failures skip it. */
static void place(const char *base, const char *name, int link, const uint8_t *content,
		  size_t cl, int record)
{
	char sub[MAX_NAME + 1];
	const char *leaf = name, *slash = strchr(name, '/');
	int dfd = open(base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), fd;

	if (dfd < 0)
		return;
	if (slash) {
		snprintf(sub, sizeof(sub), "%.*s", (int)(slash - name), name);
		mkdirat(dfd, sub, 0755);
		fd = openat(dfd, sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(dfd);
		if ((dfd = fd) < 0)
			return;
		leaf = slash + 1;
	}
	if (link) {
		char target[PATH_MAX];
		size_t tl = cl < sizeof(target) - 1 ? cl : sizeof(target) - 1;
		memcpy(target, content, tl);
		target[tl] = '\0';
		if (tl > 0 && strlen(target) == tl)
			symlinkat(target, dfd, leaf);
	} else if ((fd = openat(dfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
				0644)) >= 0) {
		struct stat sb;
		for (size_t done = 0; done < cl;) {
			ssize_t w = write(fd, content + done, cl - done);
			if (w <= 0) {
				if (w < 0 && errno == EINTR)
					continue;
				perror("fuzz-dir: write");
				abort();
			}
			done += (size_t)w;
		}
		if (record && !fstat(fd, &sb) && nwritten < MAX_ENTRIES) {
			written[nwritten].dev = sb.st_dev;
			written[nwritten].ino = sb.st_ino;
			nwritten++;
		}
		close(fd);
	}
	close(dfd);
}

static void build(const uint8_t *data, size_t size)
{
	size_t pos = 0;
	for (int i = 0; i < MAX_ENTRIES && size - pos >= 6; i++) {
		int link = data[pos] == 'l';
		size_t nl = data[pos + 1];
		pos += 2;
		if (nl > size - pos)
			nl = size - pos;
		char name[MAX_NAME + 1];
		int good = clean_name(data + pos, nl, name);
		pos += nl;
		if (size - pos < 4)
			break;
		size_t cl = (size_t)data[pos] | (size_t)data[pos + 1] << 8 |
			    (size_t)data[pos + 2] << 16 | (size_t)data[pos + 3] << 24;
		pos += 4;
		if (cl > size - pos)
			cl = size - pos;
		const uint8_t *content = data + pos;
		pos += cl;
		if (!good)
			continue;
		int bait = !strncmp(name, "bait", 4);
		if (!(bait && strchr(name, '/')))
			place(bait ? top : ckdir, name, link, content, cl, !bait);
	}
}

/* Every data file the catalogue holds open is a regular file written
 * inside the checkpoint directory. */
static void check_confined(const struct ckpt_engine *g)
{
	for (size_t i = 0; i < g->cat.nfiles; i++) {
		struct stat sb;
		size_t k;
		FZ_CHECK(fstat(g->cat.files[i].fd, &sb) == 0 && S_ISREG(sb.st_mode),
			 "data file '%s' is not a regular file", g->cat.files[i].relpath);
		for (k = 0; k < nwritten; k++)
			if (written[k].dev == sb.st_dev && written[k].ino == sb.st_ino)
				break;
		FZ_CHECK(k < nwritten, "data file '%s' was opened outside the checkpoint directory",
			 g->cat.files[i].relpath);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ckpt_engine g;
	struct ckpt_opts o;
	struct ckpt_err e = { 0 };

	if (!ckdir[0]) {
		snprintf(top, sizeof(top), "%s/d", fz_scratch());
		snprintf(ckdir, sizeof(ckdir), "%s/ckpt", top);
		if ((mkdir(top, 0755) && errno != EEXIST) || (mkdir(ckdir, 0755) && errno != EEXIST))
			abort();
		ckpt_warn_set_quiet(1);
	}
	reset();
	build(data, size);
	fz_opts(data, size, &o);
	int rc = ckpt_engine_open(&g, ckdir, &o, &e);
	if (getenv("CKPTFS_FUZZ_VERBOSE"))  /* for checking seeds */
		fprintf(stderr, "fuzz-dir: %s\n", rc ? e.msg : "opened");
	if (rc == 0) {
		check_confined(&g);
		fz_read_all(&g);
		ckpt_engine_close(&g);
	} else if (!e.msg[0] || e.code >= 0) {
		fprintf(stderr, "open failed without a message (rc %d)\n", e.code);
		abort();
	}
	return 0;
}

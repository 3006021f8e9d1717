/* eioshim.c - LD_PRELOAD shim for the fault tests: makes pread, pread64 and
 * read of chosen files fail with EIO over chosen byte ranges, like a disk
 * with bad sectors.  Test code only; built by tests/faults/test_faults.py
 * with $CC -shared -fPIC.
 *
 * Rules, one per line, "NAME START [END]": a read of a file whose path ends
 * with "/NAME" that touches a byte in [START, END) fails (END omitted: to the
 * end of the file, so "NAME N" fails every read past the first N bytes).  A
 * read that starts before START returns the bytes up to START first (a short
 * read, as a real device does) and the next read, at START, fails.  Lines
 * starting with '#' are ignored.
 *
 *   EIOSHIM_CTL=FILE   the rules are in FILE, re-read on every call, so a test
 *                      can add or lift a fault while the process runs (an
 *                      absent or empty file: no fault)
 *   EIOSHIM_RULE=RULE  one rule, used when EIOSHIM_CTL is not set
 *   EIOSHIM_COUNT=FILE one byte is appended to FILE per injected EIO
 *
 * The control file is read with raw system calls, never through the wrapped
 * functions.  Thread-safe: no state is shared except the libc entry points. */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#define MAX_RULES 16

struct rule {
	char name[256];
	uint64_t start, end;
};

static ssize_t (*real_pread)(int, void *, size_t, off_t);
static ssize_t (*real_pread64)(int, void *, size_t, off_t);
static ssize_t (*real_read)(int, void *, size_t);

__attribute__((constructor)) static void init(void)
{
	real_pread = (ssize_t (*)(int, void *, size_t, off_t))dlsym(RTLD_NEXT, "pread");
	real_pread64 = (ssize_t (*)(int, void *, size_t, off_t))dlsym(RTLD_NEXT, "pread64");
	real_read = (ssize_t (*)(int, void *, size_t))dlsym(RTLD_NEXT, "read");
}

static int parse_rules(const char *text, struct rule *r)
{
	int n = 0;
	for (const char *p = text; *p && n < MAX_RULES;) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);
		char line[512], name[256];
		unsigned long long s = 0, e = 0;
		if (len < sizeof(line)) {
			memcpy(line, p, len);
			line[len] = '\0';
			int k = line[0] == '#' ? 0 : sscanf(line, "%255s %llu %llu", name, &s, &e);
			if (k >= 2) {
				snprintf(r[n].name, sizeof(r[n].name), "%s", name);
				r[n].start = s;
				r[n].end = k == 3 ? e : UINT64_MAX;
				n++;
			}
		}
		p += len + (eol ? 1 : 0);
	}
	return n;
}

static int load_rules(struct rule *r)
{
	const char *ctl = getenv("EIOSHIM_CTL");
	char buf[4096];
	if (!ctl) {
		const char *one = getenv("EIOSHIM_RULE");
		return one ? parse_rules(one, r) : 0;
	}
	long fd = syscall(SYS_openat, AT_FDCWD, ctl, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	long got = syscall(SYS_read, (int)fd, buf, sizeof(buf) - 1);
	syscall(SYS_close, (int)fd);
	if (got <= 0)
		return 0;
	buf[got] = '\0';
	return parse_rules(buf, r);
}

static void count_fault(void)
{
	const char *f = getenv("EIOSHIM_COUNT");
	if (!f)
		return;
	long fd = syscall(SYS_openat, AT_FDCWD, f, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd >= 0) {
		syscall(SYS_write, (int)fd, "x", 1);
		syscall(SYS_close, (int)fd);
	}
}

/* How many bytes of [off, off + n) may be read: n (no fault), a smaller
 * count (the read stops before a bad range), or -1 (fail now with EIO). */
static ssize_t allowed(int fd, size_t n, uint64_t off)
{
	struct rule r[MAX_RULES];
	int nr = load_rules(r);
	char link[64], path[PATH_MAX];
	ssize_t pl;
	size_t ok = n;

	if (nr == 0 || n == 0)
		return (ssize_t)n;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	if ((pl = readlink(link, path, sizeof(path) - 1)) < 0)
		return (ssize_t)n;
	path[pl] = '\0';
	/* an unlinked file reads "/path/name (deleted)" */
	if (pl > 10 && strcmp(path + pl - 10, " (deleted)") == 0)
		path[pl - 10] = '\0';
	size_t plen = strlen(path);
	for (int i = 0; i < nr; i++) {
		size_t nl = strlen(r[i].name);
		if (plen <= nl || path[plen - nl - 1] != '/' || strcmp(path + plen - nl, r[i].name))
			continue;
		if (off + n <= r[i].start || off >= r[i].end)
			continue;
		if (off >= r[i].start)
			return -1;
		if (r[i].start - off < ok)
			ok = (size_t)(r[i].start - off);
	}
	return (ssize_t)ok;
}

static ssize_t faulty(ssize_t (*fn)(int, void *, size_t, off_t), int fd, void *buf, size_t n,
		      off_t off)
{
	ssize_t a = off >= 0 ? allowed(fd, n, (uint64_t)off) : (ssize_t)n;
	if (a < 0) {
		count_fault();
		errno = EIO;
		return -1;
	}
	return fn(fd, buf, (size_t)a, off);
}

ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
	return faulty(real_pread, fd, buf, n, off);
}

ssize_t pread64(int fd, void *buf, size_t n, off_t off)
{
	return faulty(real_pread64 ? real_pread64 : real_pread, fd, buf, n, off);
}

ssize_t read(int fd, void *buf, size_t n)
{
	off_t off;
	ssize_t a;
	int saved = errno;

	if ((off = lseek(fd, 0, SEEK_CUR)) < 0) {  /* pipes, sockets, /dev/fuse */
		errno = saved;
		return real_read(fd, buf, n);
	}
	if ((a = allowed(fd, n, (uint64_t)off)) < 0) {
		count_fault();
		errno = EIO;
		return -1;
	}
	return real_read(fd, buf, (size_t)a);
}

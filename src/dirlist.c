/* dirlist.c - see dirlist.h. */
#include "config.h"
#include "dirlist.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#if defined(__has_include)
#if __has_include(<linux/openat2.h>)
#include <linux/openat2.h>
#define CKPT_HAVE_OPENAT2 1
#endif
#endif

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int ckpt_dir_list(const char *dir, int (*keep)(const char *name), char ***names, size_t *n)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char **list = NULL;
	size_t cnt = 0;

	*names = NULL;
	*n = 0;
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") || (keep && !keep(de->d_name)))
			continue;
		char **nl = realloc(list, (cnt + 1) * sizeof(*nl));
		if (!nl || !(nl[cnt] = strdup(de->d_name))) {
			closedir(d);
			ckpt_names_free(nl ? nl : list, cnt);
			return -ENOMEM;
		}
		list = nl;
		cnt++;
	}
	closedir(d);
	if (cnt)
		qsort(list, cnt, sizeof(*list), cmp_name);
	*names = list;
	*n = cnt;
	return 0;
}

void ckpt_names_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

int ckpt_dirlist_fallback;

/* Opens rel below realdir with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS):
 * the kernel resolves every component, symlinks included, and fails with
 * EXDEV when one would leave the directory, so nothing can be swapped
 * between a check and the open.  Returns an fd, -errno, or -ENOSYS when the
 * kernel (or the build) has no openat2. */
static int open_beneath(const char *realdir, const char *rel)
{
#if defined(SYS_openat2) && defined(CKPT_HAVE_OPENAT2)
	static int missing;
	struct open_how how = { .flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY,
				.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS };
	int dfd, fd = -1, err = 0;

	if (ckpt_dirlist_fallback || __atomic_load_n(&missing, __ATOMIC_RELAXED))
		return -ENOSYS;
	if ((dfd = open(realdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -errno;
	/* EAGAIN: a rename raced with the lookup (the kernel could not prove it
	 * stayed beneath); try again a few times */
	for (int i = 0; i < 16; i++) {
		fd = (int)syscall(SYS_openat2, dfd, rel, &how, sizeof(how));
		err = fd < 0 ? errno : 0;
		if (fd >= 0 || (err != EAGAIN && err != EINTR))
			break;
	}
	close(dfd);
	if (fd < 0 && err == ENOSYS)
		__atomic_store_n(&missing, 1, __ATOMIC_RELAXED);
	return fd < 0 ? -err : fd;
#else
	(void)realdir;
	(void)rel;
	return -ENOSYS;
#endif
}

/* Without openat2: realpath() must lie inside realdir, then the resolved
 * path is opened.  Racy: a component swapped for a symlink between the two
 * is followed (doc/SECURITY.md 6). */
static int open_checked(const char *realdir, const char *rel, struct ckpt_err *e)
{
	char path[PATH_MAX], *res;
	size_t dl = strlen(realdir);
	int fd;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", realdir, rel) >= sizeof(path))
		return ckpt_err_set(e, -ENAMETOOLONG, "%s: data file path '%s' is too long", realdir, rel);
	if (!(res = realpath(path, NULL)))
		return ckpt_err_set(e, -errno, "%s: data file '%s' named in the metadata: %s", realdir,
				    rel, strerror(errno));
	if (strncmp(res, realdir, dl) != 0 || (res[dl] != '/' && res[dl] && dl != 1)) {
		ckpt_err_set(e, -EPERM, "%s: data file '%s' resolves to %s, outside the checkpoint "
			     "directory (symlink?)", realdir, rel, res);
		free(res);
		return -EPERM;
	}
	fd = open(res, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		ckpt_err_set(e, -errno, "%s: cannot open: %s", res, strerror(errno));
	free(res);
	return fd < 0 ? e->code : fd;
}

int ckpt_open_inside(const char *realdir, const char *rel, struct ckpt_err *e)
{
	struct stat sb;
	int fd;

	if (!*rel || rel[0] == '/')
		return ckpt_err_set(e, -EPERM, "%s: data file path '%s' is %s; it must be relative to "
				    "the checkpoint directory", realdir, rel, *rel ? "absolute" : "empty");
	for (const char *p = rel; *p;) {
		const char *s = strchr(p, '/');
		size_t n = s ? (size_t)(s - p) : strlen(p);
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return ckpt_err_set(e, -EPERM, "%s: data file path '%s' contains '..' and would "
					    "leave the checkpoint directory", realdir, rel);
		p += n + (s ? 1 : 0);
	}
	if (strlen(realdir) + strlen(rel) + 2 > PATH_MAX)
		return ckpt_err_set(e, -ENAMETOOLONG, "%s: data file path '%s' is too long", realdir, rel);
	/* O_NONBLOCK: a FIFO planted in the checkpoint must not hang the open */
	fd = open_beneath(realdir, rel);
	if (fd == -ENOSYS) {
		if ((fd = open_checked(realdir, rel, e)) < 0)
			return fd;
	} else if (fd == -EXDEV) {
		/* where it leads, for the message only (the refusal is the kernel's) */
		char path[PATH_MAX], *res;
		snprintf(path, sizeof(path), "%s/%s", realdir, rel);
		res = realpath(path, NULL);
		ckpt_err_set(e, -EPERM, "%s: data file '%s' goes through a symlink that is absolute or "
			     "leads outside the checkpoint directory (it resolves to %s), refused",
			     realdir, rel, res ? res : "nothing");
		free(res);
		return -EPERM;
	} else if (fd == -ELOOP) {
		return ckpt_err_set(e, -EPERM, "%s: data file '%s' goes through a symlink loop or a "
				    "/proc magic link, refused", realdir, rel);
	} else if (fd < 0) {
		return ckpt_err_set(e, fd, "%s: data file '%s' named in the metadata: %s", realdir, rel,
				    strerror(-fd));
	}
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return ckpt_err_set(e, -EINVAL, "%s: data file '%s' is not a regular file", realdir, rel);
	}
	return fd;
}

int ckpt_mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

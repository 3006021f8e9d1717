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
#include <unistd.h>

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

int ckpt_open_inside(const char *realdir, const char *rel, struct ckpt_err *e)
{
	char path[PATH_MAX], *res;
	size_t dl = strlen(realdir);
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
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", realdir, rel) >= sizeof(path))
		return ckpt_err_set(e, -ENAMETOOLONG, "%s: data file path '%s' is too long", realdir, rel);
	if (!(res = realpath(path, NULL)))
		return ckpt_err_set(e, -errno, "%s: data file '%s' named in the metadata: %s", realdir,
				    rel, strerror(errno));
	if (strcmp(res, realdir) == 0) {
		free(res);
		return ckpt_err_set(e, -EINVAL, "%s: data file path '%s' names the checkpoint directory "
				    "itself, not a file", realdir, rel);
	}
	if (strncmp(res, realdir, dl) != 0 || (res[dl] != '/' && dl != 1)) {
		ckpt_err_set(e, -EPERM, "%s: data file '%s' resolves to %s, outside the checkpoint "
			     "directory (symlink?)", realdir, rel, res);
		free(res);
		return -EPERM;
	}
	/* O_NONBLOCK: a FIFO planted in the checkpoint must not hang the open */
	fd = open(res, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		ckpt_err_set(e, -errno, "%s: cannot open: %s", res, strerror(errno));
	} else {
		struct stat sb;
		if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
			close(fd);
			fd = -1;
			ckpt_err_set(e, -EINVAL, "%s: data file '%s' is not a regular file", realdir, rel);
		}
	}
	free(res);
	return fd < 0 ? e->code : fd;
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

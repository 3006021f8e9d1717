/* dirlist.c - see dirlist.h. */
#include "config.h"
#include "dirlist.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

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

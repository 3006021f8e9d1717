/* replay.c - a plain-C driver for the fuzz harnesses, so the corpora can be
 * replayed with any C compiler (no libFuzzer): calls LLVMFuzzerTestOneInput
 * once per file named on the command line, walking directories (sorted,
 * recursively, skipping dot files).  Prints "replayed N inputs".  A crash or
 * a sanitizer report ends the process, naming the input on stderr first. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static unsigned long replayed;
static int verbose;

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	struct stat sb;
	if (!f || fstat(fileno(f), &sb)) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		if (f)
			fclose(f);
		return 1;
	}
	size_t cap = (size_t)sb.st_size;
	uint8_t *buf = malloc(cap ? cap : 1);
	size_t n = buf ? fread(buf, 1, cap, f) : 0;
	fclose(f);
	if (!buf || n != cap) {
		fprintf(stderr, "replay: %s: short read\n", path);
		free(buf);
		return 1;
	}
	if (verbose)
		fprintf(stderr, "replay: %s (%zu bytes)\n", path, n);
	/* an exact-size heap copy, so ASan sees reads past the end */
	LLVMFuzzerTestOneInput(buf, n);
	free(buf);
	replayed++;
	return 0;
}

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_path(const char *path)
{
	struct stat sb;
	if (stat(path, &sb)) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return 1;
	}
	if (!S_ISDIR(sb.st_mode))
		return run_file(path);
	DIR *d = opendir(path);
	if (!d) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return 1;
	}
	char **names = NULL;
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char **nn = realloc(names, (n + 1) * sizeof(*nn));
		if (!nn)
			abort();
		names = nn;
		if (!(names[n++] = strdup(de->d_name)))
			abort();
	}
	closedir(d);
	qsort(names, n, sizeof(*names), cmp);
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(path) + strlen(names[i]) + 2;
		char *p = malloc(l);
		if (!p)
			abort();
		snprintf(p, l, "%s/%s", path, names[i]);
		rc |= run_path(p);
		free(p);
		free(names[i]);
	}
	free(names);
	return rc;
}

int main(int argc, char **argv)
{
	int rc = 0, first = 1;

	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		verbose = 1;
		first = 2;
	}
	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	for (int i = first; i < argc; i++)
		rc |= run_path(argv[i]);
	printf("replayed %lu inputs\n", replayed);
	return rc;
}

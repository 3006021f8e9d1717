/* jsonfile.c - see jsonfile.h. */
#include "config.h"
#include "jsonfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static json_t *refuse(json_error_t *je, const char *path, const char *why)
{
	if (je) {
		memset(je, 0, sizeof(*je));
		snprintf(je->source, sizeof(je->source), "%s", path);
		snprintf(je->text, sizeof(je->text), "%s", why);
	}
	return NULL;
}

json_t *ckpt_json_load(const char *path, size_t flags, json_error_t *je)
{
	struct stat sb;
	json_t *j;
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		return refuse(je, path, strerror(errno));
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return refuse(je, path, "not a regular file");
	}
	if ((uint64_t)sb.st_size > CKPT_JSON_MAX) {
		close(fd);
		return refuse(je, path, "larger than 64 MiB");
	}
	j = json_loadfd(fd, flags, je);
	close(fd);
	return j;
}

/* assets.c - see assets.h. */
#include "config.h"
#include "assets.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "jsonfile.h"

#define MAX_RUN_CONFIG (16u << 20)

/* A config.json that configures a training run rather than a model. */
static int is_run_config(json_t *j)
{
	json_t *model = json_object_get(j, "model");
	return json_object_get(j, "hf_assets_path") || json_object_get(model, "hf_assets_path") ||
	       (json_is_object(json_object_get(j, "job")) && json_is_object(json_object_get(j, "training")));
}

/* Whether path is a HuggingFace model config (a JSON object, not a run config). */
static int is_hf_config(const char *path)
{
	json_t *j = ckpt_json_load(path, 0, NULL);
	int ok = json_is_object(j) && !is_run_config(j);
	json_decref(j);
	return ok;
}

/* realpath of val (relative to the directory of file) when it is a directory;
 * warns and returns NULL otherwise. */
static char *resolve_dir(const char *file, const char *key, const char *val)
{
	char p[PATH_MAX * 2];
	struct stat sb;

	if (val[0] == '/') {
		snprintf(p, sizeof(p), "%s", val);
	} else {
		const char *slash = strrchr(file, '/');
		int dl = slash ? (int)(slash - file) : 1;
		snprintf(p, sizeof(p), "%.*s/%s", dl, slash ? file : ".", val);
	}
	char *r = realpath(p, NULL);
	if (r && stat(r, &sb) == 0 && S_ISDIR(sb.st_mode))
		return r;
	free(r);
	ckpt_warn("%s: %s names '%s', which is not a directory here: no assets from it", file, key,
		  val);
	return NULL;
}

/* TorchTitan: hf_assets_path (or model.hf_assets_path) of a JSON run config. */
static char *from_titan(const char *path, char **origin)
{
	json_t *j = ckpt_json_load(path, 0, NULL);
	const char *key = "hf_assets_path";
	const char *v = json_string_value(json_object_get(j, key));
	char *dir = NULL;

	if (!v) {
		key = "model.hf_assets_path";
		v = json_string_value(json_object_get(json_object_get(j, "model"), "hf_assets_path"));
	}
	if (v && *v && (dir = resolve_dir(path, key, v))) {
		size_t n = strlen(key) + strlen(path) + 8;
		if ((*origin = malloc(n)))
			snprintf(*origin, n, "%s in %s", key, path);
	}
	json_decref(j);
	return dir;
}

/* Megatron-Bridge: model.extra_checkpoint_metadata.hf_model_id, else
 * model.hf_model_id, of run_config.yaml. */
static char *from_bridge(const char *path, char **origin)
{
	static const char *const k1[] = { "model", "extra_checkpoint_metadata", "hf_model_id" };
	static const char *const k2[] = { "model", "hf_model_id" };
	const char *key = "model.extra_checkpoint_metadata.hf_model_id";
	char *v, *dir = NULL;

	if (access(path, R_OK) != 0)
		return NULL;
	if (!(v = ckpt_yaml_get(path, k1, 3))) {
		key = "model.hf_model_id";
		v = ckpt_yaml_get(path, k2, 2);
	}
	if (v && (dir = resolve_dir(path, key, v))) {
		size_t n = strlen(key) + strlen(path) + 8;
		if ((*origin = malloc(n)))
			snprintf(*origin, n, "%s in %s", key, path);
	}
	free(v);
	return dir;
}

char *ckpt_assets_find(const char *dir, char **origin)
{
	static const char *const beside[] = {
		"huggingface", ".hf_metadata", "model_assets", ".",
		"../huggingface", "../.hf_metadata", "../model_assets", "..", "../..",
	};
	static const char *const up[] = { ".", "..", "../.." };
	char path[PATH_MAX + 64];

	*origin = NULL;
	for (size_t i = 0; i < sizeof(beside) / sizeof(beside[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s/config.json", dir, beside[i]);
		if (!is_hf_config(path))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, beside[i]);
		char *r = realpath(path, NULL);
		size_t n = strlen(beside[i]) + 40;
		if (r && (*origin = malloc(n)))
			snprintf(*origin, n, "next to the weights (%s/)", beside[i]);
		return r;
	}
	for (size_t i = 0; i < 3; i++) {
		static const char *const names[] = { "config.json", "job_config.json" };
		for (int k = 0; k < 2; k++) {
			snprintf(path, sizeof(path), "%s/%s/%s", dir, up[i], names[k]);
			char *real = realpath(path, NULL), *r = real ? from_titan(real, origin) : NULL;
			free(real);
			if (r)
				return r;
		}
	}
	for (size_t i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "%s/%s/run_config.yaml", dir, up[i]);
		char *real = realpath(path, NULL), *r = real ? from_bridge(real, origin) : NULL;
		free(real);
		if (r)
			return r;
	}
	return NULL;
}

/* Reads a regular file of at most MAX_RUN_CONFIG bytes, NUL-terminated. */
static char *slurp(const char *path)
{
	struct stat sb;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	char *buf = NULL;

	if (fd < 0)
		return NULL;
	if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && (uint64_t)sb.st_size <= MAX_RUN_CONFIG &&
	    (buf = malloc((size_t)sb.st_size + 1))) {
		ssize_t got = read(fd, buf, (size_t)sb.st_size);
		if (got != sb.st_size) {
			free(buf);
			buf = NULL;
		} else {
			buf[got] = '\0';
		}
	}
	close(fd);
	return buf;
}

/* A scalar with surrounding blanks, quotes and a trailing comment removed. */
static char *scalar(const char *s, size_t n)
{
	while (n && (*s == ' ' || *s == '\t'))
		s++, n--;
	if (n && (*s == '"' || *s == '\'')) {
		const char *end = memchr(s + 1, *s, n - 1);
		if (!end)
			return NULL;
		return strndup(s + 1, (size_t)(end - s - 1));
	}
	for (size_t i = 0; i < n; i++)
		if (s[i] == '#' && (i == 0 || s[i - 1] == ' ' || s[i - 1] == '\t'))
			n = i;
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
		n--;
	if (!n || (n == 1 && *s == '~') || (n == 4 && !memcmp(s, "null", 4)))
		return NULL;
	return strndup(s, n);
}

char *ckpt_yaml_get(const char *path, const char *const *keys, int nkeys)
{
	enum { DEPTH = 32 };
	int ind[DEPTH], depth = 0;      /* the open mappings: their indent ... */
	int match[DEPTH];               /* ... and whether the path so far matches keys */
	char *buf = slurp(path), *out = NULL;

	if (!buf)
		return NULL;
	for (char *line = buf, *next; line && !out; line = next) {
		next = strchr(line, '\n');
		size_t len = next ? (size_t)(next - line) : strlen(line);
		if (next)
			next++;
		int in = 0;
		while ((size_t)in < len && line[in] == ' ')
			in++;
		const char *k = line + in;
		size_t rest = len - (size_t)in;
		if (!rest || *k == '#' || *k == '-' || (in == 0 && rest >= 3 && !memcmp(k, "---", 3)))
			continue;  /* blank, comment, list item, document marker */
		const char *colon = memchr(k, ':', rest);
		if (!colon || (colon + 1 < k + rest && colon[1] != ' ' && colon[1] != '\t' &&
			       colon[1] != '\r'))
			continue;
		size_t kl = (size_t)(colon - k);
		while (depth && ind[depth - 1] >= in)
			depth--;
		int ok = depth == 0 || match[depth - 1];
		ok = ok && depth < nkeys && strlen(keys[depth]) == kl && !memcmp(keys[depth], k, kl);
		char *val = scalar(colon + 1, (size_t)(k + rest - colon - 1));
		if (!val) {  /* a nested mapping starts (or an empty value) */
			if (depth < DEPTH) {
				ind[depth] = in;
				match[depth++] = ok;
			}
		} else if (ok && depth == nkeys - 1) {
			out = val;
			val = NULL;
		}
		free(val);
	}
	free(buf);
	return out;
}

/* layout.c - see layout.h.  Output conventions: converters.md section 14. */
#include "config.h"
#include "layout.h"
#include "blob.h"
#include "dirlist.h"
#include "jsonfile.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int oom(struct ckpt_err *e)
{
	return ckpt_err_set(e, -ENOMEM, "out of memory");
}

static struct ckpt_vfile *new_file(struct ckpt_layout *l, const char *name, enum ckpt_vf_kind k)
{
	struct ckpt_vfile *nf = realloc(l->f, (l->n + 1) * sizeof(*nf));
	if (!nf)
		return NULL;
	l->f = nf;
	struct ckpt_vfile *f = &nf[l->n];
	memset(f, 0, sizeof(*f));
	f->kind = k;
	f->fd = -1;
	if (!(f->name = strdup(name)))
		return NULL;
	l->n++;
	return f;
}

/* Order inside a file: larger element size first (keeps every tensor
 * aligned), then by name, as the safetensors reference writer does. */
static int cmp_ext(const void *a, const void *b)
{
	const struct ckpt_vtensor *x = ((const struct ckpt_extent *)a)->t;
	const struct ckpt_vtensor *y = ((const struct ckpt_extent *)b)->t;
	size_t sx = ckpt_dtype_size(x->dtype), sy = ckpt_dtype_size(y->dtype);
	if (sx != sy)
		return sx > sy ? -1 : 1;
	return ckpt_natcmp(x->name, y->name);
}

static int render_header(struct ckpt_vfile *f, struct ckpt_err *e)
{
	json_t *root = json_object(), *meta = json_object();
	uint64_t pos = 0;
	char *js = NULL;
	int rc = 0;

	if (!root || !meta || json_object_set_new(meta, "format", json_string("pt")) ||
	    json_object_set_new(root, "__metadata__", meta)) {
		json_decref(root);
		return oom(e);
	}
	for (size_t i = 0; i < f->next; i++) {
		const struct ckpt_vtensor *t = f->ext[i].t;
		json_t *o = json_object(), *shape = json_array(), *offs = json_array();
		if (!o || !shape || !offs) {
			json_decref(o); json_decref(shape); json_decref(offs);
			rc = oom(e);
			goto out;
		}
		for (int d = 0; d < t->ndim; d++)
			json_array_append_new(shape, json_integer(t->shape[d]));
		json_array_append_new(offs, json_integer((json_int_t)pos));
		json_array_append_new(offs, json_integer((json_int_t)(pos + t->nbytes)));
		json_object_set_new(o, "dtype", json_string(ckpt_dtype_st_code(t->dtype)));
		json_object_set_new(o, "shape", shape);
		json_object_set_new(o, "data_offsets", offs);
		if (json_object_set_new(root, t->name, o)) {
			rc = ckpt_err_set(e, -EINVAL, "tensor name '%s' is not valid UTF-8", t->name);
			goto out;
		}
		f->ext[i].start = pos;  /* made absolute below */
		pos += t->nbytes;
	}
	if (!(js = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER))) {
		rc = oom(e);
		goto out;
	}
	size_t jl = strlen(js);
	uint64_t data_start = (8 + jl + CKPT_HEADER_ALIGN - 1) / CKPT_HEADER_ALIGN * CKPT_HEADER_ALIGN;
	uint64_t hl = data_start - 8;
	if (!(f->head = malloc(data_start))) {
		rc = oom(e);
		goto out;
	}
	for (int i = 0; i < 8; i++)
		f->head[i] = (uint8_t)(hl >> (8 * i));
	memcpy(f->head + 8, js, jl);
	memset(f->head + 8 + jl, ' ', hl - jl);
	f->head_len = data_start;
	for (size_t i = 0; i < f->next; i++)
		f->ext[i].start += data_start;
	f->size = data_start + pos;
out:
	free(js);
	json_decref(root);
	return rc;
}

static int render_index(struct ckpt_layout *l, struct ckpt_err *e)
{
	json_t *root = json_object(), *meta = json_object(), *wm = json_object();
	char *js = NULL;

	if (!root || !meta || !wm)
		goto fail;
	json_object_set_new(meta, "total_size", json_integer((json_int_t)l->tensor_bytes));
	json_object_set_new(root, "metadata", meta);
	json_object_set_new(root, "weight_map", wm);
	meta = wm = NULL;
	for (size_t i = 0; i < l->nweights; i++)
		for (size_t k = 0; k < l->f[i].next; k++)
			if (json_object_set_new(json_object_get(root, "weight_map"), l->f[i].ext[k].t->name,
						json_string(l->f[i].name)))
				goto fail;
	if (!(js = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS)))
		goto fail;
	struct ckpt_vfile *f = new_file(l, "model.safetensors.index.json", CKPT_VF_INDEX);
	if (!f)
		goto fail;
	size_t jl = strlen(js);
	if (!(f->head = malloc(jl + 1)))
		goto fail;
	memcpy(f->head, js, jl);
	f->head[jl] = '\n';
	f->head_len = f->size = jl + 1;
	free(js);
	json_decref(root);
	return 0;
fail:
	free(js);
	json_decref(root);
	json_decref(meta);
	json_decref(wm);
	return oom(e);
}

/* Weight files of other formats and our own outputs are not assets. */
static int is_asset_name(const char *n)
{
	static const char *const skip_suffix[] = {
		".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf",
		".distcp", ".index.json", ".metadata", ".tmp",
	};
	/* trainer files that may sit beside a config.json */
	if (!strcmp(n, "metadata.json") || !strcmp(n, "checkpoint_manifest.json") ||
	    !strcmp(n, "latest_checkpointed_iteration.txt"))
		return 0;
	size_t l = strlen(n);
	if (n[0] == '.')
		return 0;
	for (size_t i = 0; i < sizeof(skip_suffix) / sizeof(skip_suffix[0]); i++) {
		size_t sl = strlen(skip_suffix[i]);
		if (l >= sl && strcmp(n + l - sl, skip_suffix[i]) == 0)
			return 0;
	}
	return 1;
}

/* config.json with every "torch_dtype" / "dtype" string value replaced by
 * dtype (the served one); everything else byte for byte.  NULL on error. */
static char *patch_config(const char *in, size_t len, const char *dtype, size_t *out_len)
{
	static const char *const keys[] = { "\"torch_dtype\"", "\"dtype\"" };
	size_t cap = len + 256, n = 0;
	char *out = malloc(cap);

	if (!out)
		return NULL;
	for (size_t i = 0; i < len;) {
		size_t kl = 0;
		for (int k = 0; k < 2 && !kl; k++)
			if (len - i >= strlen(keys[k]) && !memcmp(in + i, keys[k], strlen(keys[k])))
				kl = strlen(keys[k]);
		size_t j = i + kl;
		if (kl) {
			while (j < len && (in[j] == ' ' || in[j] == '\t' || in[j] == '\n' || in[j] == '\r'))
				j++;
			if (j < len && in[j] == ':') {
				j++;
				while (j < len && (in[j] == ' ' || in[j] == '\t' || in[j] == '\n' || in[j] == '\r'))
					j++;
			} else {
				j = len;
			}
		}
		if (kl && j < len && in[j] == '"') {
			const char *end = memchr(in + j + 1, '"', len - j - 1);
			if (end) {
				size_t keep = j + 1 - i, dl = strlen(dtype);
				if (n + keep + dl + 1 >= cap && !(out = realloc(out, cap = cap * 2 + keep + dl)))
					return NULL;
				memcpy(out + n, in + i, keep);
				n += keep;
				memcpy(out + n, dtype, dl);
				n += dl;
				i = (size_t)(end - in);  /* the closing quote is copied next */
				continue;
			}
		}
		if (n + 1 >= cap && !(out = realloc(out, cap *= 2)))
			return NULL;
		out[n++] = in[i++];
	}
	*out_len = n;
	return out;
}

/* Serves a patched config.json from memory instead of the file. */
static int patch_asset(struct ckpt_vfile *f, const char *dtype, struct ckpt_err *e)
{
	char *buf = malloc(f->size ? f->size : 1);
	size_t n;
	int rc;

	if (!buf)
		return oom(e);
	if ((rc = ckpt_pread_full(f->fd, buf, f->size, 0))) {
		free(buf);
		return ckpt_err_set(e, rc, "asset %s: read failed: %s", f->name, ckpt_read_strerror(rc));
	}
	f->head = (uint8_t *)patch_config(buf, f->size, dtype, &n);
	free(buf);
	if (!f->head)
		return oom(e);
	f->head_len = f->size = n;
	close(f->fd);
	f->fd = -1;
	return 0;
}

/* The files a HuggingFace model directory holds besides its weights.  A
 * directory found next to an (untrusted) checkpoint shows only these. */
static int is_hf_asset_name(const char *n)
{
	static const char *const exact[] = {
		"config.json", "generation_config.json", "special_tokens_map.json", "added_tokens.json",
		"vocab.json", "vocab.txt", "merges.txt", "spiece.model", "sentencepiece.bpe.model",
		"preprocessor_config.json", "processor_config.json", "chat_template.json",
		"chat_template.jinja", "llm_config.json", "vit_config.json",
	};
	size_t l = strlen(n);
	for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
		if (!strcmp(n, exact[i]))
			return 1;
	return (!strncmp(n, "tokenizer", 9) && is_asset_name(n)) ||
	       (l > 9 && !strcmp(n + l - 9, ".tiktoken"));
}

static int is_bagel_asset_name(const char *n)
{
	return !strcmp(n, "ae.safetensors") || is_hf_asset_name(n);
}

static int is_bagel_extra_asset_name(const char *n)
{
	return !strcmp(n, "ae.safetensors") || is_asset_name(n);
}

/* Shows dir's asset files (found: HuggingFace names only, no symlinks;
 * bagel: BAGEL's VAE ae.safetensors too); config.json gets dtype when set. */
static int add_assets(struct ckpt_layout *l, const char *dir, int found, int bagel,
		      const char *dtype, struct ckpt_err *e)
{
	char **names, path[PATH_MAX];
	size_t n;
	int (*keep)(const char *) = bagel ? (found ? is_bagel_asset_name : is_bagel_extra_asset_name)
					  : (found ? is_hf_asset_name : is_asset_name);
	int rc = ckpt_dir_list(dir, keep, &names, &n);

	if (rc)
		return ckpt_err_set(e, rc, "assets directory %s: %s", dir, strerror(-rc));
	for (size_t i = 0; i < n && !rc; i++) {
		struct stat sb;
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		/* -o assets follows symlinks (the HF cache is made of them); a directory
		 * found inside a checkpoint may not point anywhere else */
		int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | (found ? O_NOFOLLOW : 0));
		if (fd < 0 || fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
			if (fd >= 0)
				close(fd);
			continue;  /* subdirectories and dangling links are not shown */
		}
		struct ckpt_vfile *f = new_file(l, names[i], CKPT_VF_ASSET);
		if (!f) {
			close(fd);
			rc = oom(e);
			break;
		}
		f->fd = fd;
		f->size = (uint64_t)sb.st_size;
		if (ckpt_layout_find(l, names[i]) != (int)l->n - 1) {
			rc = ckpt_err_set(e, -EEXIST, "assets directory %s: '%s' would hide a weights file "
					  "of the same name", dir, names[i]);
			break;
		}
		if (dtype && !strcmp(f->name, "config.json"))
			rc = patch_asset(f, dtype, e);
	}
	ckpt_names_free(names, n);
	return rc;
}

/* The base model's split: file names and an assignment of every view tensor,
 * from assets/model.safetensors.index.json.  Returns 1 when it names every
 * tensor with safe file names, 0 otherwise (then sizes decide). */
static int plan_from_index(const struct ckpt_view *v, const char *assets, size_t *file_of,
			   char ***names, size_t *nfiles)
{
	char path[PATH_MAX];
	json_t *root, *wm;
	int ok = 1;

	*names = NULL;
	*nfiles = 0;
	if (!assets)
		return 0;
	snprintf(path, sizeof(path), "%s/model.safetensors.index.json", assets);
	if (!(root = ckpt_json_load(path, 0, NULL)))
		return 0;
	wm = json_object_get(root, "weight_map");
	for (size_t i = 0; i < v->n && ok; i++) {
		const char *f = json_string_value(json_object_get(wm, v->t[i].name));
		size_t fl = f ? strlen(f) : 0;
		if (!f || fl < 13 || fl > 255 || strchr(f, '/') || f[0] == '.' ||
		    strcmp(f + fl - 12, ".safetensors") != 0) {
			if (json_is_object(wm))
				ckpt_warn("%s does not name '%s' (or names an odd file): files are packed by "
					  "size instead", path, v->t[i].name);
			ok = 0;
			break;
		}
		size_t k;
		for (k = 0; k < *nfiles && strcmp((*names)[k], f) != 0; k++)
			;
		if (k == *nfiles) {
			char **nn = realloc(*names, (*nfiles + 1) * sizeof(*nn));
			if (!nn || !(nn[*nfiles] = strdup(f))) {
				*names = nn ? nn : *names;
				ok = 0;
				break;
			}
			*names = nn;
			(*nfiles)++;
		}
		file_of[i] = k;
	}
	json_decref(root);
	if (!ok || v->n == 0) {
		for (size_t k = 0; k < *nfiles; k++)
			free((*names)[k]);
		free(*names);
		*names = NULL;
		*nfiles = 0;
		return 0;
	}
	return 1;
}

/* Greedy packing in name order: a new file when the next tensor would push
 * a non-empty file past max. */
static int plan_by_size(const struct ckpt_view *v, uint64_t max, size_t *file_of, char ***names,
			size_t *nfiles)
{
	size_t n = 0;
	uint64_t cur = 0;
	for (size_t i = 0; i < v->n; i++) {
		if (i == 0 || (cur > 0 && cur + v->t[i].nbytes > max)) {
			n++;
			cur = 0;
		}
		cur += v->t[i].nbytes;
		file_of[i] = n - 1;
	}
	if (n == 0)
		n = 1;  /* an empty model still gets one (empty) file */
	if (!(*names = calloc(n, sizeof(**names))))
		return -ENOMEM;
	*nfiles = n;
	for (size_t k = 0; k < n; k++) {
		char name[64];
		if (n == 1)
			snprintf(name, sizeof(name), "model.safetensors");
		else
			snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", k + 1, n);
		if (!((*names)[k] = strdup(name)))
			return -ENOMEM;
	}
	return 0;
}

int ckpt_layout_build(struct ckpt_layout *l, const struct ckpt_view *v, const struct ckpt_opts *o,
		      struct ckpt_err *e)
{
	uint64_t max = o->max_shard_size ? o->max_shard_size : CKPT_DEFAULT_MAX_SHARD;
	size_t *file_of = calloc(v->n + 1, sizeof(*file_of)), nfiles = 0;
	char **names = NULL;
	int rc = 0, mirrored;

	memset(l, 0, sizeof(*l));
	if (!file_of)
		return oom(e);
	if (v->weights_file) {  /* BAGEL: one file under its own name, as BAGEL loads it */
		mirrored = 0;
		nfiles = 1;
		if (!(names = calloc(1, sizeof(*names))) || !(names[0] = strdup(v->weights_file)))
			rc = oom(e);
	} else {
		mirrored = plan_from_index(v, o->assets, file_of, &names, &nfiles);
		if (!mirrored && plan_by_size(v, max, file_of, &names, &nfiles))
			rc = oom(e);
	}
	for (size_t i = 0; i < v->n; i++)
		l->tensor_bytes += v->t[i].nbytes;
	for (size_t k = 0; k < nfiles && !rc; k++) {
		struct ckpt_vfile *f = new_file(l, names[k], CKPT_VF_WEIGHTS);
		if (!f || !(f->ext = calloc(v->n + 1, sizeof(*f->ext)))) {
			rc = oom(e);
			break;
		}
		for (size_t i = 0; i < v->n; i++)
			if (file_of[i] == k)
				f->ext[f->next++].t = &v->t[i];
		if (f->next > 1)
			qsort(f->ext, f->next, sizeof(*f->ext), cmp_ext);
		rc = render_header(f, e);
		l->nweights++;
	}
	for (size_t k = 0; k < nfiles; k++)
		free(names ? names[k] : NULL);
	free(names);
	free(file_of);
	if (!rc && (nfiles > 1 || mirrored))
		rc = render_index(l, e);
	/* BAGEL's configs are served byte for byte: its loader reads no torch_dtype */
	if (!rc && o->assets)
		rc = add_assets(l, o->assets, o->assets_found, v->weights_file != NULL,
				o->dtype != CKPT_DT_INVALID && !o->dtype_auto && !v->weights_file ?
				ckpt_dtype_name(o->dtype) : NULL, e);
	if (rc)
		ckpt_layout_free(l);
	return rc;
}

void ckpt_layout_free(struct ckpt_layout *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->f[i].name);
		free(l->f[i].head);
		free(l->f[i].ext);
		if (l->f[i].fd >= 0)
			close(l->f[i].fd);
	}
	free(l->f);
	memset(l, 0, sizeof(*l));
}

int ckpt_layout_find(const struct ckpt_layout *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->f[i].name, name) == 0)
			return (int)i;
	return -1;
}

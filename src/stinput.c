/* stinput.c - see stinput.h; formats in dcp-format.md sections 7.1-7.4. */
#include "config.h"
#include "stinput.h"

#include <errno.h>
#include <stdint.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blob.h"
#include "coverage.h"
#include "dirlist.h"
#include "strmap.h"

#define MAX_HEADER (100u * 1000 * 1000)  /* the safetensors limit */

static int is_st_name(const char *n)
{
	size_t l = strlen(n);
	return n[0] != '.' && l > 12 && strcmp(n + l - 12, ".safetensors") == 0;
}

int ckpt_st_present(const char *dir)
{
	char **names;
	size_t n;
	if (ckpt_dir_list(dir, is_st_name, &names, &n))
		return 0;
	ckpt_names_free(names, n);
	return n > 0;
}

struct st_state {
	struct ckpt_catalog *c;
	struct strmap names;  /* tensor name -> index + 1 */
	size_t tcap;
};

static int shape_of(json_t *arr, int64_t *dims, int *ndim)
{
	size_t i;
	json_t *v;

	if (!json_is_array(arr) || json_array_size(arr) > CKPT_MAXDIM)
		return -EINVAL;
	json_array_foreach(arr, i, v) {
		if (!json_is_integer(v) || json_integer_value(v) < 0)
			return -EINVAL;
		dims[i] = json_integer_value(v);
	}
	*ndim = (int)json_array_size(arr);
	return 0;
}

static struct ckpt_tensor *tensor_for(struct st_state *s, const char *name, enum ckpt_dtype dt,
				      int ndim, const char *label, struct ckpt_err *e)
{
	struct ckpt_catalog *c = s->c;
	uintptr_t i = (uintptr_t)strmap_get(&s->names, name);

	if (i) {
		struct ckpt_tensor *t = &c->tensors[i - 1];
		if (t->dtype != dt || t->ndim != ndim) {
			ckpt_err_set(e, -EINVAL, "%s: tensor '%s': dtype or rank differs from another "
				     "file", label, name);
			return NULL;
		}
		return t;
	}
	if (c->ntensors == s->tcap) {
		size_t ncap = s->tcap ? s->tcap * 2 : 64;
		struct ckpt_tensor *nt = realloc(c->tensors, ncap * sizeof(*nt));
		if (!nt)
			goto oom;
		c->tensors = nt;
		s->tcap = ncap;
	}
	struct ckpt_tensor *t = &c->tensors[c->ntensors];
	memset(t, 0, sizeof(*t));
	if (!(t->name = strdup(name)))
		goto oom;
	c->ntensors++;
	if (strmap_put(&s->names, name, (void *)(uintptr_t)c->ntensors))
		goto oom;
	t->dtype = dt;
	t->ndim = ndim;
	return t;
oom:
	ckpt_err_set(e, -ENOMEM, "out of memory");
	return NULL;
}

int ckpt_st_entry(json_t *ent, const char *label, const char *name, uint64_t data_start,
		  uint64_t fsize, struct ckpt_st_entry *out, struct ckpt_err *e)
{
	json_t *offs = json_object_get(ent, "data_offsets");
	const char *code = json_string_value(json_object_get(ent, "dtype"));

	out->dtype = code ? ckpt_dtype_from_st(code) : CKPT_DT_INVALID;
	if (!json_is_object(ent))
		return ckpt_err_set(e, -EINVAL, "%s: tensor '%s': header entry is not an object", label,
				    name);
	if (out->dtype == CKPT_DT_INVALID)
		return ckpt_err_set(e, -EINVAL, "%s: tensor '%s': unknown dtype '%s'", label, name,
				    code ? code : "(none)");
	if (shape_of(json_object_get(ent, "shape"), out->shape, &out->ndim) || !json_is_array(offs) ||
	    json_array_size(offs) != 2 || !json_is_integer(json_array_get(offs, 0)) ||
	    !json_is_integer(json_array_get(offs, 1)))
		return ckpt_err_set(e, -EINVAL, "%s: tensor '%s': expected shape (list of at most %d "
				    "ints) and data_offsets [begin, end]", label, name, CKPT_MAXDIM);
	json_int_t b = json_integer_value(json_array_get(offs, 0));
	json_int_t en = json_integer_value(json_array_get(offs, 1));
	out->numel = 1;
	for (int d = 0; d < out->ndim; d++)
		if (__builtin_mul_overflow(out->numel, (uint64_t)out->shape[d], &out->numel))
			return ckpt_err_set(e, -EOVERFLOW, "%s: tensor '%s': shape overflows", label, name);
	if (__builtin_mul_overflow(out->numel, ckpt_dtype_size(out->dtype), &out->nbytes) || b < 0 ||
	    en < b || (uint64_t)(en - b) != out->nbytes || data_start + (uint64_t)en > fsize)
		return ckpt_err_set(e, -EINVAL, "%s: tensor '%s': data_offsets [%lld, %lld] do not hold "
				    "%llu bytes inside the file", label, name, (long long)b,
				    (long long)en, (unsigned long long)out->nbytes);
	out->begin = data_start + (uint64_t)b;
	return 0;
}

/* Adds one header entry as a chunk. */
static int add_entry(struct st_state *s, const char *label, uint32_t file, uint64_t data_start,
		     uint64_t fsize, const char *name, json_t *ent, json_t *sharding,
		     struct ckpt_err *e)
{
	struct ckpt_st_entry se;
	int64_t off[CKPT_MAXDIM] = { 0 };
	int n2, rc;

	if ((rc = ckpt_st_entry(ent, label, name, data_start, fsize, &se, e)))
		return rc;
	int ndim = se.ndim;
	enum ckpt_dtype dt = se.dtype;
	int64_t *size = se.shape;
	uint64_t numel = se.numel, nbytes = se.nbytes;
	json_t *info = json_object_get(sharding, name);
	if (info && shape_of(json_object_get(info, "saved_offsets"), off, &n2) == 0) {
		if (n2 != ndim)
			return ckpt_err_set(e, -EINVAL, "%s: tensor '%s': saved_offsets has %d entries for "
					    "a %d-dim shard", label, name, n2, ndim);
	} else if (info) {
		return ckpt_err_set(e, -EINVAL, "%s: DCP_SHARDING_INFO of '%s' has no saved_offsets list",
				    label, name);
	}
	struct ckpt_tensor *t = tensor_for(s, name, dt, ndim, label, e);
	if (!t)
		return e->code;
	for (int d = 0; d < ndim; d++) {  /* global shape: the furthest extent of any shard */
		if (off[d] < 0 || off[d] > INT64_MAX - size[d])
			return ckpt_err_set(e, -EOVERFLOW, "%s: tensor '%s': saved_offsets[%d] = %lld "
					    "overflows with its shard size", label, name, d,
					    (long long)off[d]);
		if (off[d] + size[d] > t->shape[d])
			t->shape[d] = off[d] + size[d];
	}
	if (numel == 0)
		return 0;
	/* replicated shards appear twice: the coverage check drops identical chunks */
	int rc2 = ckpt_tensor_add_chunk(t, off, size);
	if (rc2)
		return ckpt_err_set(e, rc2, "%s: tensor '%s': %s", label, name,
				    rc2 == -ENOMEM ? "out of memory" : "element count overflows");
	struct ckpt_chunk *ch = &t->chunks[t->nchunks - 1];
	ch->numel = numel;
	ch->file = file;
	ch->item_off = se.begin;
	ch->item_len = nbytes;
	ch->decoded = 1;
	ch->item.dtype = dt;
	ch->item.ndim = ndim;
	ch->item.contiguous = 1;
	ch->item.storage_bytes = nbytes;
	uint64_t st = 1;
	for (int d = ndim - 1; d >= 0; d--) {
		ch->item.size[d] = size[d];
		ch->item.stride[d] = (int64_t)st;
		st *= (uint64_t)size[d];
	}
	return 0;
}

int ckpt_st_header_load(int fd, uint64_t base, uint64_t avail, const char *label, json_t **root,
			uint64_t *data_start, struct ckpt_err *e)
{
	uint8_t len8[8];
	json_error_t je;
	char *hdr;
	int rc;

	*root = NULL;
	if (avail < 8 || (rc = ckpt_pread_full(fd, len8, 8, base)) == -ENODATA)
		return ckpt_err_set(e, -EINVAL, "%s: byte %llu: too short for a safetensors header", label,
				    (unsigned long long)base);
	if (rc)
		return ckpt_err_set(e, rc, "%s: byte %llu: read failed: %s", label,
				    (unsigned long long)base, ckpt_read_strerror(rc));
	uint64_t hl = 0;
	for (int i = 7; i >= 0; i--)
		hl = (hl << 8) | len8[i];
	if (hl > MAX_HEADER || hl > avail - 8)
		return ckpt_err_set(e, -EINVAL, "%s: byte %llu: header length %llu does not fit the file "
				    "(%llu bytes left) or the 100 MB limit", label, (unsigned long long)base,
				    (unsigned long long)hl, (unsigned long long)avail);
	if (!(hdr = malloc(hl + 1)))
		return ckpt_err_set(e, -ENOMEM, "out of memory");
	if ((rc = ckpt_pread_full(fd, hdr, hl, base + 8))) {
		free(hdr);
		return ckpt_err_set(e, rc, "%s: read failed: %s", label, ckpt_read_strerror(rc));
	}
	*root = json_loadb(hdr, hl, JSON_REJECT_DUPLICATES, &je);
	free(hdr);
	if (!*root || !json_is_object(*root)) {
		rc = ckpt_err_set(e, -EINVAL, "%s: byte %llu: safetensors header is not a JSON object: %s",
				  label, (unsigned long long)(base + 8 + (*root ? 0 : je.position)),
				  *root ? "other JSON" : je.text);
		json_decref(*root);
		*root = NULL;
		return rc;
	}
	*data_start = base + 8 + hl;
	return 0;
}

static int read_file(struct st_state *s, const char *name, struct ckpt_err *e)
{
	struct ckpt_catalog *c = s->c;
	char label[4200];
	struct stat sb;
	json_error_t je;
	json_t *root = NULL, *sharding = NULL;
	int fd, rc;

	snprintf(label, sizeof(label), "%s/%s", c->dir, name);
	if ((fd = ckpt_open_inside(c->realdir, name, e)) < 0)
		return fd;
	struct ckpt_source_file *nf = realloc(c->files, (c->nfiles + 1) * sizeof(*nf));
	if (!nf) {
		close(fd);
		return ckpt_err_set(e, -ENOMEM, "out of memory");
	}
	c->files = nf;
	nf[c->nfiles] = (struct ckpt_source_file){ .relpath = strdup(name), .fd = fd };
	uint32_t file = (uint32_t)c->nfiles++;
	if (!nf[file].relpath)
		return ckpt_err_set(e, -ENOMEM, "out of memory");
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode))
		return ckpt_err_set(e, -EINVAL, "%s: not a regular file", label);
	nf[file].size = (uint64_t)sb.st_size;
	if ((int64_t)sb.st_mtime > c->mtime)
		c->mtime = (int64_t)sb.st_mtime;
	uint64_t data_start;
	if ((rc = ckpt_st_header_load(fd, 0, nf[file].size, label, &root, &data_start, e)))
		return rc;
	const char *si = json_string_value(json_object_get(json_object_get(root, "__metadata__"),
							   "DCP_SHARDING_INFO"));
	if (si && !(sharding = json_loads(si, 0, &je))) {
		rc = ckpt_err_set(e, -EINVAL, "%s: __metadata__.DCP_SHARDING_INFO is not JSON: %s", label,
				  je.text);
		goto out;
	}
	const char *key;
	json_t *ent;
	json_object_foreach(root, key, ent) {
		if (strcmp(key, "__metadata__") == 0)
			continue;
		if ((rc = add_entry(s, label, file, data_start, nf[file].size, key, ent, sharding, e)))
			goto out;
	}
	rc = 0;
out:
	json_decref(sharding);
	json_decref(root);
	return rc;
}

int ckpt_st_load(struct ckpt_catalog *c, const char *only, struct ckpt_err *e)
{
	struct st_state s = { .c = c };
	char **names;
	size_t n;
	int rc = ckpt_dir_list(c->realdir, is_st_name, &names, &n);

	if (rc)
		return ckpt_err_set(e, rc, "%s: cannot list directory: %s", c->dir, strerror(-rc));
	for (size_t i = 0; i < n && !rc; i++)
		if (!only || !strcmp(names[i], only))
			rc = read_file(&s, names[i], e);
	if (!rc && only && c->nfiles == 0)
		rc = ckpt_err_set(e, -ENOENT, "%s/%s: no such safetensors file", c->dir, only);
	for (size_t i = 0; i < c->ntensors && !rc; i++) {
		struct ckpt_tensor *t = &c->tensors[i];
		t->numel = 1;
		for (int dd = 0; dd < t->ndim && !rc; dd++)
			if (__builtin_mul_overflow(t->numel, (uint64_t)t->shape[dd], &t->numel))
				rc = ckpt_err_set(e, -EOVERFLOW, "tensor '%s': shape overflows", t->name);
		if (!rc && __builtin_mul_overflow(t->numel, ckpt_dtype_size(t->dtype), &t->nbytes))
			rc = ckpt_err_set(e, -EOVERFLOW, "tensor '%s': byte size overflows", t->name);
	}
	ckpt_names_free(names, n);
	strmap_free(&s.names);
	return rc;
}

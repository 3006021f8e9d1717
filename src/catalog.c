/* catalog.c - DCP metadata to catalogue; see catalog.h and dcp-format.md
 * sections 2, 5 and 10. */
#include "config.h"
#include "catalog.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blob.h"
#include "coverage.h"
#include "dirlist.h"
#include "pickle.h"
#include "stinput.h"
#include "strmap.h"

#define MAX_METADATA (4ull << 30)

/* One storage_data entry. */
struct sinfo {
	char *relpath;
	uint64_t offset, length;
	int zstd;
};

struct builder {
	struct ckpt_catalog *c;
	const struct ckpt_opts *o;
	struct strmap tensors;   /* fqn -> index + 1 into c->tensors */
	struct strmap storage;   /* "fqn\x01offsets" -> struct sinfo * */
	struct strmap files;     /* relpath -> index + 1 into c->files */
	struct strmap bytes;     /* bytes entry names already recorded */
	struct strmap st_blobs;  /* "file:offset" -> parsed safetensors blob (SAFETENSORS items) */
	size_t tcap;
	const char *label;       /* metadata file being read */
};

static int oom(struct ckpt_err *e)
{
	return ckpt_err_set(e, -ENOMEM, "out of memory");
}

static int push_name(char ***arr, size_t *n, const char *s)
{
	char **na = realloc(*arr, (*n + 1) * sizeof(*na));
	if (!na)
		return -ENOMEM;
	*arr = na;
	if (!(na[*n] = strdup(s)))
		return -ENOMEM;
	(*n)++;
	return 0;
}

/* "fqn\x01o0,o1,..." or "fqn\x02" for no offset (bytes entries). */
static char *storage_key(const char *fqn, const int64_t *off, int ndim, int has_off)
{
	size_t cap = strlen(fqn) + 2 + (size_t)ndim * 21 + 1, n;
	char *k = malloc(cap);
	if (!k)
		return NULL;
	n = (size_t)snprintf(k, cap, "%s%c", fqn, has_off ? 1 : 2);
	for (int d = 0; has_off && d < ndim; d++)
		n += (size_t)snprintf(k + n, cap - n, "%s%lld", d ? "," : "", (long long)off[d]);
	return k;
}

static int parse_transforms(const struct pv *td, const char *label, const char *fqn,
			    int *zstd, struct ckpt_err *e)
{
	*zstd = 0;
	if (!td || td->kind == PV_NONE)
		return 0;
	if (td->kind != PV_LIST && td->kind != PV_TUPLE)
		return ckpt_err_set(e, -EINVAL, "%s: key '%s': transform_descriptors is a %s, "
				    "expected a list", label, fqn, pv_kind_name(td->kind));
	for (size_t i = 0; i < td->u.seq.n; i++) {
		const char *s;
		if (pv_get_str(td->u.seq.v[i], &s))
			return ckpt_err_set(e, -EINVAL, "%s: key '%s': transform descriptor is not a "
					    "string", label, fqn);
		/* "name[@domain][/version]": accept stream.zstd with major version 1 */
		const char *slash = strchr(s, '/');
		size_t nl = slash ? (size_t)(slash - s) : strlen(s);
		if (nl == 11 && strncmp(s, "stream.zstd", 11) == 0 && slash &&
		    strtol(slash + 1, NULL, 10) == 1) {
			if (*zstd)
				return ckpt_err_set(e, -ENOTSUP, "%s: key '%s': zstd applied twice is not "
						    "supported", label, fqn);
			*zstd = 1;
			continue;
		}
		return ckpt_err_set(e, -ENOTSUP, "%s: key '%s': unknown stream transform '%s' "
				    "(ckptfs knows stream.zstd/1)", label, fqn, s);
	}
	return 0;
}

static int add_storage(struct builder *b, const struct pv *key, const struct pv *val,
		       struct ckpt_err *e)
{
	const struct pv *ks = pv_obj_state(key), *vs = pv_obj_state(val), *offv;
	const char *fqn, *rel;
	int64_t off[CKPT_MAXDIM], ioff, ilen;
	int ndim = 0, has_off = 0, rc;

	if (!pv_is_obj(key, PC_METADATA_INDEX) || pv_get_str(pv_dict_get(ks, "fqn"), &fqn))
		return ckpt_err_set(e, -EINVAL, "%s: byte %llu: storage_data key is not a MetadataIndex "
				    "with an fqn", b->label, (unsigned long long)key->off);
	offv = pv_dict_get(ks, "offset");
	if (offv && offv->kind != PV_NONE) {
		if (pv_get_shape(offv, off, CKPT_MAXDIM, &ndim))
			return ckpt_err_set(e, -EINVAL, "%s: key '%s': MetadataIndex.offset is not a "
					    "shape", b->label, fqn);
		has_off = 1;
	}
	if (!pv_is_obj(val, PC_STORAGE_INFO) || pv_get_str(pv_dict_get(vs, "relative_path"), &rel) ||
	    pv_get_int(pv_dict_get(vs, "offset"), &ioff) ||
	    pv_get_int(pv_dict_get(vs, "length"), &ilen))
		return ckpt_err_set(e, -EINVAL, "%s: key '%s': storage_data value is not a _StorageInfo "
				    "with relative_path (a string without NUL), offset and length",
				    b->label, fqn);
	if (ioff < 0 || ilen < 0)
		return ckpt_err_set(e, -EINVAL, "%s: key '%s': negative storage offset (%lld) or length "
				    "(%lld)", b->label, fqn, (long long)ioff, (long long)ilen);
	struct sinfo *si = calloc(1, sizeof(*si));
	char *k = storage_key(fqn, off, ndim, has_off);
	if (!si || !k || !(si->relpath = strdup(rel))) {
		free(si);
		free(k);
		return oom(e);
	}
	si->offset = (uint64_t)ioff;
	si->length = (uint64_t)ilen;
	if ((rc = parse_transforms(pv_dict_get(vs, "transform_descriptors"), b->label, fqn,
				   &si->zstd, e)) ||
	    strmap_get(&b->storage, k)) {  /* merged per-rank files: first wins */
		free(si->relpath);
		free(si);
		free(k);
		return rc;
	}
	rc = strmap_put(&b->storage, k, si);
	free(k);
	if (rc) {
		free(si->relpath);
		free(si);
		return oom(e);
	}
	return 0;
}

static int add_tensor(struct builder *b, const char *fqn, const struct pv *md, struct ckpt_err *e)
{
	struct ckpt_catalog *c = b->c;
	const struct pv *st = pv_obj_state(md), *props, *ps, *chunks, *dtv = NULL;
	int64_t shape[CKPT_MAXDIM];
	int ndim;

	props = pv_dict_get(st, "properties");
	ps = pv_obj_state(props);
	if (ps && ps->kind == PV_TUPLE && ps->u.seq.n >= 1)
		dtv = ps->u.seq.v[0];
	else if (ps && ps->kind == PV_DICT)
		dtv = pv_dict_get(ps, "dtype");
	if (!dtv || dtv->kind != PV_GLOBAL || dtv->u.g.id != PC_TORCH_DTYPE)
		return ckpt_err_set(e, -EINVAL, "%s: key '%s': TensorProperties has no torch dtype",
				    b->label, fqn);
	if (pv_get_shape(pv_dict_get(st, "size"), shape, CKPT_MAXDIM, &ndim))
		return ckpt_err_set(e, -EINVAL, "%s: key '%s': size is not a shape of at most %d "
				    "non-negative ints", b->label, fqn, CKPT_MAXDIM);
	chunks = pv_dict_get(st, "chunks");
	if (!chunks || chunks->kind != PV_LIST)
		return ckpt_err_set(e, -EINVAL, "%s: key '%s': chunks is not a list", b->label, fqn);

	struct ckpt_tensor *t;
	uintptr_t idx = (uintptr_t)strmap_get(&b->tensors, fqn);
	if (idx) {
		t = &c->tensors[idx - 1];
		if (t->dtype != (enum ckpt_dtype)dtv->u.g.aux || t->ndim != ndim ||
		    memcmp(t->shape, shape, sizeof(int64_t) * (size_t)ndim))
			return ckpt_err_set(e, -EINVAL, "%s: key '%s': dtype or shape differs from another "
					    "metadata file", b->label, fqn);
	} else {
		if (c->ntensors == b->tcap) {
			size_t ncap = b->tcap ? b->tcap * 2 : 64;
			struct ckpt_tensor *nt = realloc(c->tensors, ncap * sizeof(*nt));
			if (!nt)
				return oom(e);
			c->tensors = nt;
			b->tcap = ncap;
		}
		t = &c->tensors[c->ntensors];
		memset(t, 0, sizeof(*t));
		if (!(t->name = strdup(fqn)))
			return oom(e);
		c->ntensors++;
		if (strmap_put(&b->tensors, fqn, (void *)(uintptr_t)c->ntensors))
			return oom(e);
		t->dtype = (enum ckpt_dtype)dtv->u.g.aux;
		t->ndim = ndim;
		memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
		t->numel = 1;
		for (int d = 0; d < ndim; d++)
			if (__builtin_mul_overflow(t->numel, (uint64_t)shape[d], &t->numel))
				return ckpt_err_set(e, -EOVERFLOW, "%s: key '%s': shape overflows 64 bits",
						    b->label, fqn);
		if (__builtin_mul_overflow(t->numel, ckpt_dtype_size(t->dtype), &t->nbytes) ||
		    t->nbytes > (UINT64_MAX >> 2))
			return ckpt_err_set(e, -EOVERFLOW, "%s: key '%s': byte size overflows",
					    b->label, fqn);
	}
	for (size_t i = 0; i < chunks->u.seq.n; i++) {
		const struct pv *cs = pv_obj_state(chunks->u.seq.v[i]);
		int64_t off[CKPT_MAXDIM], size[CKPT_MAXDIM];
		int n1, n2;
		if (!pv_is_obj(chunks->u.seq.v[i], PC_CHUNK_MD) ||
		    pv_get_shape(pv_dict_get(cs, "offsets"), off, CKPT_MAXDIM, &n1) ||
		    pv_get_shape(pv_dict_get(cs, "sizes"), size, CKPT_MAXDIM, &n2) ||
		    n1 != ndim || n2 != ndim)
			return ckpt_err_set(e, -EINVAL, "%s: key '%s': chunk %zu is not a "
					    "ChunkStorageMetadata with %d-dim offsets and sizes",
					    b->label, fqn, i, ndim);
		int rc = ckpt_tensor_add_chunk(t, off, size);
		if (rc)
			return rc == -ENOMEM ? oom(e) :
			       ckpt_err_set(e, rc, "%s: key '%s': chunk %zu has an element count that "
					    "overflows", b->label, fqn, i);
	}
	return 0;
}

/* Reads the metadata file name (path: the same, for messages), opened like
 * the data files: a symlink may not lead outside the checkpoint. */
static int read_metadata(struct builder *b, const char *path, const char *name,
			 struct ckpt_err *e)
{
	struct ckpt_pickle pk = { 0 };
	uint8_t *buf = NULL;
	struct stat sb;
	int fd, rc;

	b->label = path;
	if ((fd = ckpt_open_inside(b->c->realdir, name, e)) < 0)
		return fd;
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size > MAX_METADATA) {
		close(fd);
		return ckpt_err_set(e, -EINVAL, "%s: not a regular file of at most 4 GiB", path);
	}
	if ((int64_t)sb.st_mtime > b->c->mtime)
		b->c->mtime = (int64_t)sb.st_mtime;
	if (!(buf = malloc((size_t)sb.st_size + 1))) {
		close(fd);
		return oom(e);
	}
	rc = ckpt_pread_full(fd, buf, (size_t)sb.st_size, 0);
	close(fd);
	if (rc) {
		free(buf);
		return ckpt_err_set(e, rc, "%s: read failed: %s", path, ckpt_read_strerror(rc));
	}
	if ((rc = ckpt_pickle_parse(&pk, buf, (size_t)sb.st_size, path, e)))
		goto out;
	const struct pv *st = pv_obj_state(pk.root), *sdm = pv_dict_get(st, "state_dict_metadata");
	const struct pv *sd = pv_dict_get(st, "storage_data");
	if (!sdm || sdm->kind != PV_DICT) {
		rc = ckpt_err_set(e, -EINVAL, "%s: root object has no state_dict_metadata dict "
				  "(not DCP metadata)", path);
		goto out;
	}
	if (!sd || sd->kind != PV_DICT) {
		rc = ckpt_err_set(e, -ENOTSUP, "%s: storage_data is missing: written by a storage "
				  "writer other than FileSystemWriter, which ckptfs cannot read", path);
		goto out;
	}
	for (size_t i = 0; i + 1 < sdm->u.seq.n && !rc; i += 2) {
		const char *fqn;
		const struct pv *v = sdm->u.seq.v[i + 1];
		if (pv_get_str(sdm->u.seq.v[i], &fqn)) {
			rc = ckpt_err_set(e, -EINVAL, "%s: byte %llu: state_dict_metadata key is not a "
					  "string", path, (unsigned long long)sdm->u.seq.v[i]->off);
		} else if (pv_is_obj(v, PC_TENSOR_STORAGE_MD)) {
			rc = add_tensor(b, fqn, v, e);
		} else if (pv_is_obj(v, PC_BYTES_STORAGE_MD)) {
			if (!strmap_get(&b->bytes, fqn) &&
			    (strmap_put(&b->bytes, fqn, (void *)1) ||
			     push_name(&b->c->bytes, &b->c->nbytes, fqn)))
				rc = oom(e);
		} else {
			char msg[600];
			snprintf(msg, sizeof(msg), "%s: entry of unknown kind", fqn);
			if (push_name(&b->c->skipped, &b->c->nskipped, msg))
				rc = oom(e);
		}
	}
	for (size_t i = 0; i + 1 < sd->u.seq.n && !rc; i += 2)
		rc = add_storage(b, sd->u.seq.v[i], sd->u.seq.v[i + 1], e);
out:
	ckpt_pickle_free(&pk);
	free(buf);
	return rc;
}

static int intern_file(struct builder *b, const char *rel, uint32_t *idx, struct ckpt_err *e)
{
	struct ckpt_catalog *c = b->c;
	uintptr_t i = (uintptr_t)strmap_get(&b->files, rel);
	struct stat sb;

	if (i) {
		*idx = (uint32_t)(i - 1);
		return 0;
	}
	int fd = ckpt_open_inside(c->realdir, rel, e);
	if (fd < 0)
		return fd;
	if (fstat(fd, &sb) < 0) {
		close(fd);
		return ckpt_err_set(e, -errno, "%s/%s: %s", c->dir, rel, strerror(errno));
	}
	struct ckpt_source_file *nf = realloc(c->files, (c->nfiles + 1) * sizeof(*nf));
	if (!nf) {
		close(fd);
		return oom(e);
	}
	c->files = nf;
	nf[c->nfiles] = (struct ckpt_source_file){ .relpath = strdup(rel), .fd = fd,
						   .size = (uint64_t)sb.st_size };
	if (!nf[c->nfiles].relpath) {
		close(fd);
		return oom(e);
	}
	c->nfiles++;
	if (strmap_put(&b->files, rel, (void *)(uintptr_t)c->nfiles))
		return oom(e);
	*idx = (uint32_t)(c->nfiles - 1);
	return 0;
}

void ckpt_item_label(const struct ckpt_catalog *c, const struct ckpt_tensor *t,
		     const struct ckpt_chunk *ch, char *buf, size_t n)
{
	snprintf(buf, n, "%s/%s (item of '%s' at file offset %llu)", c->dir,
		 c->files[ch->file].relpath, t->name, (unsigned long long)ch->item_off);
}

int ckpt_chunk_bind(const struct ckpt_tensor *t, struct ckpt_chunk *ch, const struct ckpt_item *it,
		    const char *label, struct ckpt_err *e)
{
	uint64_t numel = 1;

	if (it->dtype != t->dtype)
		return ckpt_err_set(e, -EINVAL, "%s: stored dtype %s, metadata says %s", label,
				    ckpt_dtype_name(it->dtype), ckpt_dtype_name(t->dtype));
	for (int d = 0; d < it->ndim; d++)
		numel *= (uint64_t)it->size[d];
	ch->item = *it;
	if (it->ndim == t->ndim && !memcmp(it->size, ch->size, sizeof(int64_t) * (size_t)t->ndim)) {
		ch->decoded = 1;
		return 0;
	}
	if (numel != ch->numel || !it->contiguous)
		return ckpt_err_set(e, -EINVAL, "%s: stored tensor has %llu elements in another shape "
				    "than the chunk's %llu", label, (unsigned long long)numel,
				    (unsigned long long)ch->numel);
	ckpt_warn("%s: stored shape differs from the chunk shape; reading it in C order", label);
	ch->item.ndim = t->ndim;
	uint64_t s = 1;
	for (int d = t->ndim - 1; d >= 0; d--) {
		ch->item.size[d] = ch->size[d];
		ch->item.stride[d] = (int64_t)s;
		s *= (uint64_t)ch->size[d];
	}
	ch->decoded = 1;
	return 0;
}

/* A .distcp written with SerializationFormat.SAFETENSORS (dcp-format.md
 * 3.3): every item of a file points at one safetensors blob holding all its
 * tensors by fqn.  The blob header is parsed once per (file, offset). */
static int bind_safetensors_item(struct builder *b, struct ckpt_tensor *t, struct ckpt_chunk *ch,
				 const char *label, struct ckpt_err *e)
{
	const struct ckpt_source_file *f = &b->c->files[ch->file];
	char key[64];
	struct st_blob { json_t *root; uint64_t data_start; } *blob;
	struct ckpt_st_entry se;
	int rc;

	snprintf(key, sizeof(key), "%u:%llu", ch->file, (unsigned long long)ch->item_off);
	if (!(blob = strmap_get(&b->st_blobs, key))) {
		if (!(blob = calloc(1, sizeof(*blob))))
			return oom(e);
		if ((rc = ckpt_st_header_load(f->fd, ch->item_off, f->size - ch->item_off, label,
					      &blob->root, &blob->data_start, e))) {
			free(blob);
			ckpt_err_prefix(e, "item is neither a torch.save zip nor a safetensors blob");
			return rc;
		}
		if (strmap_put(&b->st_blobs, key, blob)) {
			json_decref(blob->root);
			free(blob);
			return oom(e);
		}
	}
	json_t *ent = json_object_get(blob->root, t->name);
	if (!ent)
		return ckpt_err_set(e, -EINVAL, "%s: the safetensors blob has no tensor '%s'", label,
				    t->name);
	if ((rc = ckpt_st_entry(ent, label, t->name, blob->data_start, f->size, &se, e)))
		return rc;
	if (se.dtype != t->dtype || se.ndim != t->ndim ||
	    memcmp(se.shape, ch->size, sizeof(int64_t) * (size_t)t->ndim))
		return ckpt_err_set(e, -EINVAL, "%s: safetensors entry has another dtype or shape than "
				    "the chunk", label);
	ch->item = (struct ckpt_item){ .dtype = se.dtype, .ndim = se.ndim, .contiguous = 1,
				       .storage_bytes = se.nbytes, .data_off = se.begin - ch->item_off };
	uint64_t st = 1;
	for (int d = se.ndim - 1; d >= 0; d--) {
		ch->item.size[d] = se.shape[d];
		ch->item.stride[d] = (int64_t)st;
		st *= (uint64_t)se.shape[d];
	}
	ch->decoded = 1;
	return 0;
}

static int bind_storage(struct builder *b, struct ckpt_tensor *t, struct ckpt_err *e)
{
	struct ckpt_catalog *c = b->c;
	char label[1024];
	int rc;

	for (size_t i = 0; i < t->nchunks; i++) {
		struct ckpt_chunk *ch = &t->chunks[i];
		char *k = storage_key(t->name, ch->off, t->ndim, 1);
		if (!k)
			return oom(e);
		struct sinfo *si = strmap_get(&b->storage, k);
		free(k);
		if (!si)
			return ckpt_err_set(e, -EINVAL, "%s: key '%s': chunk %zu has no storage_data "
					    "entry", c->md_desc, t->name, i);
		if ((rc = intern_file(b, si->relpath, &ch->file, e)))
			return rc;
		ch->item_off = si->offset;
		ch->item_len = si->length;
		ch->zstd = si->zstd;
		const struct ckpt_source_file *f = &c->files[ch->file];
		if (si->offset > f->size || si->length > f->size - si->offset)
			return ckpt_err_set(e, -EINVAL, "%s/%s: file is %llu bytes, but key '%s' needs "
					    "bytes %llu..%llu", c->dir, f->relpath,
					    (unsigned long long)f->size, t->name,
					    (unsigned long long)si->offset,
					    (unsigned long long)(si->offset + si->length));
		if (ch->zstd)
			continue;  /* decoded on first read, after decompression */
		struct ckpt_blob blob = { .fd = f->fd, .base = si->offset, .len = si->length,
					  .label = label };
		struct ckpt_item it;
		uint8_t magic[4] = { 0 };
		ckpt_item_label(c, t, ch, label, sizeof(label));
		if (si->length >= 4 && ckpt_pread_full(f->fd, magic, 4, si->offset) == 0 &&
		    memcmp(magic, "PK\3\4", 4) != 0) {
			if ((rc = bind_safetensors_item(b, t, ch, label, e)))
				return rc;
			continue;
		}
		if ((rc = ckpt_item_decode(&blob, &it, e)) ||
		    (rc = ckpt_chunk_bind(t, ch, &it, label, e)))
			return rc;
	}
	return 0;
}

static int cmp_tensor(const void *a, const void *b)
{
	return strcmp(((const struct ckpt_tensor *)a)->name, ((const struct ckpt_tensor *)b)->name);
}

static int is_rank_metadata(const char *n)
{
	/* "__<digits>.metadata" */
	if (strncmp(n, "__", 2) != 0 || !n[2])
		return 0;
	const char *p = n + 2;
	while (*p >= '0' && *p <= '9')
		p++;
	return p > n + 2 && strcmp(p, ".metadata") == 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Finds the metadata files: .metadata, else every __<rank>.metadata.
 * Returns 1 when there are none but *.safetensors files (safetensors input). */
static int find_metadata(struct ckpt_catalog *c, char ***list, size_t *n, struct ckpt_err *e)
{
	char path[PATH_MAX];
	int rc;

	*list = NULL;
	*n = 0;
	snprintf(path, sizeof(path), "%s/.metadata", c->dir);
	if (access(path, F_OK) == 0)
		return push_name(list, n, ".metadata") ? oom(e) : 0;
	if ((rc = ckpt_dir_list(c->dir, is_rank_metadata, list, n)))
		return ckpt_err_set(e, rc, "%s: cannot open directory: %s", c->dir, strerror(-rc));
	if (*n)
		return 0;
	snprintf(path, sizeof(path), "%s/.metadata.tmp", c->dir);
	if (access(path, F_OK) == 0)
		return ckpt_err_set(e, -ENOENT, "%s: no .metadata, but .metadata.tmp exists: the save "
				    "was interrupted before it finished; this checkpoint is incomplete",
				    c->dir);
	if (ckpt_st_present(c->dir))
		return 1;
	return ckpt_err_set(e, -ENOENT, "%s: no .metadata file and no *.safetensors files: not a "
			    "PyTorch Distributed Checkpoint directory", c->dir);
}

int ckpt_catalog_present(const char *dir)
{
	char p[PATH_MAX];
	char **names;
	size_t n;

	snprintf(p, sizeof(p), "%s/.metadata", dir);
	if (access(p, F_OK) == 0)
		return 1;
	if (ckpt_dir_list(dir, is_rank_metadata, &names, &n) == 0) {
		ckpt_names_free(names, n);
		if (n)
			return 1;
	}
	return ckpt_st_present(dir);
}

static void free_st_blob(void *v)
{
	struct { json_t *root; uint64_t data_start; } *blob = v;
	json_decref(blob->root);
	free(blob);
}

/* Records where each bytes entry is stored (no file is opened). */
static int record_bytes_items(struct builder *b, struct ckpt_err *e)
{
	struct ckpt_catalog *c = b->c;
	if (!c->nbytes)
		return 0;
	if (!(c->bitems = calloc(c->nbytes, sizeof(*c->bitems))))
		return oom(e);
	for (size_t i = 0; i < c->nbytes; i++) {
		char *k = storage_key(c->bytes[i], NULL, 0, 0);
		struct sinfo *si = k ? strmap_get(&b->storage, k) : NULL;
		free(k);
		if (!si)
			continue;
		struct ckpt_bytes_item *bi = &c->bitems[c->nbitems++];
		*bi = (struct ckpt_bytes_item){ .name = strdup(c->bytes[i]), .relpath = strdup(si->relpath),
						.off = si->offset, .len = si->length, .zstd = si->zstd };
		if (!bi->name || !bi->relpath)
			return oom(e);
	}
	return 0;
}

static void free_sinfo(void *v)
{
	struct sinfo *si = v;
	free(si->relpath);
	free(si);
}

/* With -o allow_holes: the bytes read as zeros, over all tensors, may not
 * exceed o->max_hole_bytes, by default the total size of the data files, so
 * a small checkpoint cannot present a huge mostly-zero model (the served
 * size is then at most about twice what the checkpoint stores).  Accepted
 * holes are warned about, one line per tensor. */
static int check_holes(const struct ckpt_catalog *c, const struct ckpt_opts *o,
			     struct ckpt_err *e)
{
	uint64_t stored = 0, holes = 0, worst = 0, limit;
	const char *wname = NULL;

	for (size_t i = 0; i < c->nfiles; i++)
		if (__builtin_add_overflow(stored, c->files[i].size, &stored))
			stored = UINT64_MAX;
	for (size_t i = 0; i < c->ntensors; i++) {
		const struct ckpt_tensor *t = &c->tensors[i];
		uint64_t covered = 0, hb;
		if (!t->holes)
			continue;
		for (size_t k = 0; k < t->nchunks; k++)  /* disjoint after the coverage check */
			covered += t->chunks[k].numel;
		hb = (t->numel - covered) * ckpt_dtype_size(t->dtype);  /* <= nbytes <= 2^62 */
		if (hb > worst) {
			worst = hb;
			wname = t->name;
		}
		if (__builtin_add_overflow(holes, hb, &holes))
			holes = UINT64_MAX;
	}
	limit = o->max_hole_bytes ? o->max_hole_bytes : stored;
	if (holes > limit)
		return ckpt_err_set(e, -EFBIG, "%s: the holes to zero-fill add up to %llu bytes (key '%s' "
			    "alone %llu), more than the %s of %llu bytes: refused; -o allow_holes=SIZE "
			    "allows more", c->md_desc, (unsigned long long)holes, wname,
			    (unsigned long long)worst,
			    o->max_hole_bytes ? "-o allow_holes limit" : "checkpoint's data files",
			    (unsigned long long)limit);
	for (size_t i = 0; i < c->ntensors; i++) {
		const struct ckpt_tensor *t = &c->tensors[i];
		uint64_t covered = 0;
		if (!t->holes)
			continue;
		for (size_t k = 0; k < t->nchunks; k++)
			covered += t->chunks[k].numel;
		ckpt_warn("%s: key '%s': chunks cover %llu of %llu elements; the rest reads as zeros",
			  c->md_desc, t->name, (unsigned long long)covered, (unsigned long long)t->numel);
	}
	return 0;
}

int ckpt_catalog_open(struct ckpt_catalog *c, const char *dir, const struct ckpt_opts *o,
		      struct ckpt_err *e)
{
	struct builder b = { .c = c, .o = o };
	char **mds = NULL, path[PATH_MAX];
	size_t nmd = 0;
	int rc = 0;

	memset(c, 0, sizeof(*c));
	if (!(c->dir = strdup(dir)))
		return oom(e);
	for (size_t l = strlen(c->dir); l > 1 && c->dir[l - 1] == '/'; l--)
		c->dir[l - 1] = '\0';
	if (!(c->realdir = realpath(dir, NULL))) {
		rc = ckpt_err_set(e, -errno, "%s: %s", dir, strerror(errno));
		goto out;
	}
	int st_input = 0;
	if (!o->source_file && (rc = find_metadata(c, &mds, &nmd, e)) < 0)
		goto out;
	if (o->source_file || rc == 1) {  /* rc: find_metadata found no .metadata */
		st_input = 1;
		if ((rc = ckpt_st_load(c, o->source_file, e)))
			goto out;
		if (o->source_file)
			snprintf(path, sizeof(path), "%s header", o->source_file);
		else
			snprintf(path, sizeof(path), "%zu *.safetensors headers (no .metadata)", c->nfiles);
		if (!(c->md_desc = strdup(path))) {
			rc = oom(e);
			goto out;
		}
	}
	size_t dl = 0;
	char desc[PATH_MAX];
	desc[0] = '\0';
	for (size_t i = 0; i < nmd && !rc; i++) {
		snprintf(path, sizeof(path), "%s/%s", c->dir, mds[i]);
		dl += (size_t)snprintf(desc + dl, dl < sizeof(desc) ? sizeof(desc) - dl : 0, "%s%s",
				       i ? "+" : "", i ? mds[i] : path);
		if (dl >= sizeof(desc))
			dl = sizeof(desc) - 1;
		rc = read_metadata(&b, path, mds[i], e);
	}
	if (rc)
		goto out;
	if (!st_input && !(c->md_desc = strdup(desc))) {
		rc = oom(e);
		goto out;
	}
	for (size_t i = 0; i < c->ntensors && !rc; i++) {
		rc = ckpt_tensor_check_coverage(c->md_desc, &c->tensors[i], o->allow_holes, e);
		if (!rc && !st_input)
			rc = bind_storage(&b, &c->tensors[i], e);
	}
	if (!rc && o->allow_holes)
		rc = check_holes(c, o, e);
	if (!rc && c->ntensors > 1)
		qsort(c->tensors, c->ntensors, sizeof(*c->tensors), cmp_tensor);
	if (!rc && c->nbytes > 1)
		qsort(c->bytes, c->nbytes, sizeof(*c->bytes), cmp_str);
	if (!rc && !st_input)
		rc = record_bytes_items(&b, e);
out:
	ckpt_names_free(mds, nmd);
	strmap_each(&b.storage, free_sinfo);
	strmap_free(&b.storage);
	strmap_free(&b.tensors);
	strmap_free(&b.files);
	strmap_free(&b.bytes);
	strmap_each(&b.st_blobs, free_st_blob);
	strmap_free(&b.st_blobs);
	if (rc)
		ckpt_catalog_close(c);
	return rc;
}

void ckpt_catalog_close(struct ckpt_catalog *c)
{
	for (size_t i = 0; i < c->nfiles; i++) {
		close(c->files[i].fd);
		free(c->files[i].relpath);
	}
	for (size_t i = 0; i < c->ntensors; i++) {
		free(c->tensors[i].name);
		free(c->tensors[i].chunks);
	}
	for (size_t i = 0; i < c->nbytes; i++)
		free(c->bytes[i]);
	for (size_t i = 0; i < c->nbitems; i++) {
		free(c->bitems[i].name);
		free(c->bitems[i].relpath);
	}
	free(c->bitems);
	for (size_t i = 0; i < c->nskipped; i++)
		free(c->skipped[i]);
	free(c->files);
	free(c->tensors);
	free(c->bytes);
	free(c->skipped);
	free(c->dir);
	free(c->realdir);
	free(c->md_desc);
	memset(c, 0, sizeof(*c));
}

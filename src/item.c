/* item.c - see item.h. */
#include "config.h"
#include "item.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pickle.h"
#include "tzip.h"

#define MAX_PKL (16u << 20)

#define BAD(...) ckpt_err_set(e, -EINVAL, __VA_ARGS__)

/* Finds the tensor rebuild call under the _rebuild_parameter and
 * _rebuild_from_type_v2 wrappers; *fn is the function, *args its arguments. */
static int find_call(const struct pv *v, enum pc_id *fn, const struct pv **args, int depth)
{
	if (!v || v->kind != PV_OBJ || depth > 8)
		return -EINVAL;
	const struct pv *a = v->u.obj.args;
	switch (v->u.obj.cls->u.g.id) {
	case PC_REBUILD_PARAMETER:
		return a->u.seq.n >= 1 ? find_call(a->u.seq.v[0], fn, args, depth + 1) : -EINVAL;
	case PC_REBUILD_FROM_TYPE_V2: /* (func, new_type, args, state) */
		if (a->u.seq.n < 3 || a->u.seq.v[0]->kind != PV_GLOBAL ||
		    a->u.seq.v[2]->kind != PV_TUPLE)
			return -EINVAL;
		*fn = a->u.seq.v[0]->u.g.id;
		*args = a->u.seq.v[2];
		return 0;
	default:
		*fn = v->u.obj.cls->u.g.id;
		*args = a;
		return 0;
	}
}

static int interpret(const struct pv *root, const struct ckpt_blob *b, struct ckpt_item *it,
		     char *key, size_t keylen, uint64_t *numel_or_bytes, int *untyped,
		     struct ckpt_err *e)
{
	const struct pv *args;
	enum pc_id fn;

	if (find_call(root, &fn, &args, 0))
		return BAD("%s: data.pkl: expected a tensor rebuild call, found a %s", b->label,
			   root ? pv_kind_name(root->kind) : "nothing");
	if (fn != PC_REBUILD_V2 && fn != PC_REBUILD_V3 && fn != PC_REBUILD_TENSOR)
		return BAD("%s: data.pkl: expected torch._utils._rebuild_tensor_v2/v3, found a call of a "
			   "different function (not a plain tensor)", b->label);
	size_t need = fn == PC_REBUILD_V3 ? 7 : 4;
	if (args->u.seq.n < need)
		return BAD("%s: data.pkl: tensor rebuild call has %zu arguments, expected at least %zu",
			   b->label, args->u.seq.n, need);
	const struct pv *st = args->u.seq.v[0];
	if (!st || st->kind != PV_PERSID || !st->u.pid || st->u.pid->kind != PV_TUPLE ||
	    st->u.pid->u.seq.n < 5)
		return BAD("%s: data.pkl: tensor storage is not a ('storage', type, key, location, "
			   "numel) persistent id", b->label);
	struct pv **pid = st->u.pid->u.seq.v;
	const char *tag, *k;
	if (pv_get_str(pid[0], &tag) || strcmp(tag, "storage") != 0 || pid[1]->kind != PV_GLOBAL ||
	    pv_get_str(pid[2], &k) || pv_get_int(pid[4], (int64_t *)numel_or_bytes))
		return BAD("%s: data.pkl: malformed storage persistent id", b->label);
	if (strlen(k) >= keylen || strchr(k, '/'))
		return BAD("%s: data.pkl: bad storage key '%s'", b->label, k);
	strcpy(key, k);
	const struct pv *stype = pid[1];
	if (stype->u.g.id == PC_UNTYPED_STORAGE) {
		*untyped = 1;
		if (fn != PC_REBUILD_V3 || args->u.seq.v[6]->kind != PV_GLOBAL ||
		    args->u.seq.v[6]->u.g.id != PC_TORCH_DTYPE)
			return BAD("%s: data.pkl: untyped storage without a dtype argument", b->label);
		it->dtype = (enum ckpt_dtype)args->u.seq.v[6]->u.g.aux;
	} else if (stype->u.g.id == PC_TORCH_STORAGE) {
		*untyped = 0;
		it->dtype = (enum ckpt_dtype)stype->u.g.aux;
		if (it->dtype == CKPT_DT_INVALID)
			return BAD("%s: data.pkl: storage type torch.%s (quantized) is not supported",
				   b->label, stype->u.g.name);
	} else {
		return BAD("%s: data.pkl: storage type %s.%s is not a tensor storage", b->label,
			   stype->u.g.module, stype->u.g.name);
	}
	if (pv_get_int(args->u.seq.v[1], &it->storage_offset) || it->storage_offset < 0)
		return BAD("%s: data.pkl: bad storage_offset", b->label);
	int nd2;
	if (pv_get_shape(args->u.seq.v[2], it->size, CKPT_MAXDIM, &it->ndim))
		return BAD("%s: data.pkl: bad tensor size (more than %d dims, or not ints)",
			   b->label, CKPT_MAXDIM);
	/* strides may be negative in theory; DCP never stores those */
	if (pv_get_shape(args->u.seq.v[3], it->stride, CKPT_MAXDIM, &nd2) || nd2 != it->ndim)
		return BAD("%s: data.pkl: stride has a different rank than size, or negative entries",
			   b->label);
	return 0;
}

uint64_t ckpt_item_elem_off(const struct ckpt_item *it, const int64_t *idx)
{
	uint64_t o = (uint64_t)it->storage_offset;
	for (int d = 0; d < it->ndim; d++)
		o += (uint64_t)idx[d] * (uint64_t)it->stride[d];
	return o * ckpt_dtype_size(it->dtype);
}

static int check_extent(const struct ckpt_blob *b, struct ckpt_item *it, uint64_t count,
			int untyped, struct ckpt_err *e)
{
	size_t es = ckpt_dtype_size(it->dtype);
	uint64_t storage_bytes = untyped ? count : count * es;
	uint64_t numel = 1, last = (uint64_t)it->storage_offset, expect = 1;

	if (!untyped && count > UINT64_MAX / es)
		return BAD("%s: data.pkl: storage size overflows", b->label);
	if (storage_bytes > it->storage_bytes)
		return BAD("%s: storage record is %llu bytes, data.pkl says %llu", b->label,
			   (unsigned long long)it->storage_bytes, (unsigned long long)storage_bytes);
	for (int d = 0; d < it->ndim; d++) {
		if (__builtin_mul_overflow(numel, (uint64_t)it->size[d], &numel))
			return BAD("%s: data.pkl: tensor size overflows", b->label);
	}
	if (numel == 0) {
		it->contiguous = 1;
		return 0;
	}
	/* An item never presents more elements than its storage holds, so what
	 * is served is bounded by what the checkpoint stores.  DCP clones every
	 * tensor whose storage size differs from its byte count before saving
	 * (filesystem.py), so only a crafted item has stride 0 or overlapping
	 * strides that read storage elements more than once. */
	if (numel > storage_bytes / es)
		return BAD("%s: data.pkl: the tensor has %llu elements but its storage only %llu (stride 0 "
			   "or overlapping strides): refused, ckptfs serves no more bytes than an item "
			   "stores", b->label, (unsigned long long)numel,
			   (unsigned long long)(storage_bytes / es));
	for (int d = 0; d < it->ndim; d++) {
		uint64_t span;
		if (__builtin_mul_overflow((uint64_t)(it->size[d] - 1), (uint64_t)it->stride[d], &span) ||
		    __builtin_add_overflow(last, span, &last))
			return BAD("%s: data.pkl: stride overflows", b->label);
	}
	if (last >= storage_bytes / es)
		return BAD("%s: data.pkl: tensor (offset %lld, last element %llu) reaches past its "
			   "storage of %llu elements", b->label, (long long)it->storage_offset,
			   (unsigned long long)last, (unsigned long long)(storage_bytes / es));
	it->contiguous = 1;
	for (int d = it->ndim - 1; d >= 0; d--) {
		if (it->size[d] != 1 && (uint64_t)it->stride[d] != expect)
			it->contiguous = 0;
		expect *= (uint64_t)it->size[d];
	}
	return 0;
}

int ckpt_torchsave_open(const struct ckpt_blob *b, struct tzip *z, struct ckpt_pickle *pk,
			uint8_t **pkl, struct ckpt_err *e)
{
	uint8_t magic[4];
	char label[512];
	int rc;

	*pkl = NULL;
	memset(pk, 0, sizeof(*pk));
	if ((rc = ckpt_blob_read(b, 0, magic, sizeof(magic), e)))
		return rc;
	if (memcmp(magic, "PK\3\4", 4) != 0)
		return BAD("%s: byte 0: expected a torch.save zip archive (PK\\3\\4), found other bytes",
			   b->label);
	if ((rc = tzip_open(z, b, e)))
		return rc;
	const struct tzip_entry *pe = tzip_find(z, "data.pkl");
	if (!pe)
		rc = BAD("%s: torch.save archive has no %s/data.pkl record", b->label, z->prefix);
	else if (pe->size > MAX_PKL)
		rc = BAD("%s: data.pkl is %llu bytes, more than the 16 MiB allowed", b->label,
			 (unsigned long long)pe->size);
	else if (!(*pkl = malloc(pe->size ? pe->size : 1)))
		rc = ckpt_err_set(e, -ENOMEM, "out of memory");
	else if (!(rc = ckpt_blob_read(b, pe->data_off, *pkl, pe->size, e))) {
		snprintf(label, sizeof(label), "%s: data.pkl", b->label);
		rc = ckpt_pickle_parse(pk, *pkl, pe->size, label, e);
	}
	if (rc) {
		free(*pkl);
		*pkl = NULL;
		tzip_free(z);
	}
	return rc;
}

int ckpt_item_decode(const struct ckpt_blob *b, struct ckpt_item *it, struct ckpt_err *e)
{
	struct tzip z;
	struct ckpt_pickle pk = { 0 };
	uint8_t *pkl = NULL;
	char key[64], rec[80];
	uint64_t count = 0;
	int untyped = 0, rc;

	memset(it, 0, sizeof(*it));
	if ((rc = ckpt_torchsave_open(b, &z, &pk, &pkl, e)))
		return rc;
	if ((rc = interpret(pk.root, b, it, key, sizeof(key), &count, &untyped, e)))
		goto out;
	snprintf(rec, sizeof(rec), "data/%s", key);
	const struct tzip_entry *de = tzip_find(&z, rec);
	if (!de) {
		rc = BAD("%s: torch.save archive has no %s/%s record", b->label, z.prefix, rec);
		goto out;
	}
	it->data_off = de->data_off;
	it->storage_bytes = de->size;
	const struct tzip_entry *bo = tzip_find(&z, "byteorder");
	if (bo) {
		char order[8] = { 0 };
		if (bo->size >= sizeof(order)) {
			rc = BAD("%s: byteorder record too long", b->label);
			goto out;
		}
		if ((rc = ckpt_blob_read(b, bo->data_off, order, bo->size, e)))
			goto out;
		if (strcmp(order, "big") == 0)
			it->big_endian = 1;
		else if (strcmp(order, "little") != 0) {
			rc = BAD("%s: byteorder record is '%s', expected 'little' or 'big'", b->label, order);
			goto out;
		}
	}
	rc = check_extent(b, it, count, untyped, e);
out:
	ckpt_pickle_free(&pk);
	free(pkl);
	tzip_free(&z);
	return rc;
}

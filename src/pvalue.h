/* pvalue.h - the inert values a pickle is parsed into (by pickle.c), the
 * whitelist of globals they may name (whitelist.c), and readers for them
 * (pvalue.c). */
#ifndef CKPT_PVALUE_H
#define CKPT_PVALUE_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

enum pv_kind {
	PV_NONE, PV_BOOL, PV_INT, PV_FLOAT, PV_STR, PV_BYTES,
	PV_TUPLE, PV_LIST, PV_DICT, PV_SET,
	PV_GLOBAL,  /* a whitelisted class or function */
	PV_OBJ,     /* result of REDUCE / NEWOBJ, with optional BUILD state */
	PV_PERSID,  /* result of BINPERSID */
	PV_MARK     /* internal: never visible in a finished tree */
};

/* Whitelisted globals.  The class names listed in pickle.c map to these. */
enum pc_id {
	PC_NONE = 0,
	PC_METADATA, PC_TENSOR_STORAGE_MD, PC_BYTES_STORAGE_MD, PC_CHUNK_MD,
	PC_METADATA_INDEX, PC_TENSOR_PROPERTIES, PC_MEM_FORMAT_ENUM, PC_STORAGE_META,
	PC_STORAGE_INFO, PC_PLANNER_CLASS, PC_MCORE_SAVE_PLAN,
	PC_TORCH_SIZE, PC_TORCH_DTYPE, PC_TORCH_STORAGE, PC_UNTYPED_STORAGE,
	PC_GET_LAYOUT, PC_REBUILD_V2, PC_REBUILD_V3, PC_REBUILD_TENSOR,
	PC_REBUILD_PARAMETER, PC_REBUILD_FROM_TYPE_V2, PC_ORDERED_DICT,
	PC_GETATTR, PC_PATH, PC_ENUM_OTHER, PC_NAMESPACE
};

struct pv {
	enum pv_kind kind;
	uint64_t off;  /* byte offset of the opcode that made it */
	union {
		int b;
		int64_t i;
		double f;
		struct { char *s; size_t len; } str;          /* PV_STR, PV_BYTES */
		struct { struct pv **v; size_t n, cap; } seq;  /* tuple/list/set; dict: k0,v0,k1,v1... */
		struct {
			enum pc_id id;
			int aux;  /* PC_TORCH_DTYPE / PC_TORCH_STORAGE: enum ckpt_dtype */
			const char *module, *name;  /* canonical (alias-folded) spelling */
		} g;
		struct { struct pv *cls, *args, *state; } obj;
		struct pv *pid;
	} u;
};

/* Helpers for reading a parsed tree.  All return NULL / -EINVAL on a mismatch
 * and never modify the tree. */
struct pv *pv_dict_get(const struct pv *dict, const char *key);
int pv_is_obj(const struct pv *v, enum pc_id id);
struct pv *pv_obj_state(const struct pv *v);  /* BUILD state, or NULL */
int pv_get_int(const struct pv *v, int64_t *out);
int pv_get_str(const struct pv *v, const char **out);  /* fails on embedded NUL */
/* A shape: torch.Size(tuple), a tuple or a list of ints.  *ndim <= max. */
int pv_get_shape(const struct pv *v, int64_t *dims, int max, int *ndim);
const char *pv_kind_name(enum pv_kind k);

/* Internal to the reader (whitelist.c): resolves (module, name) to a
 * whitelisted global in g (id, dtype for torch dtypes and storages, the
 * canonical spelling); returns 0 or -EPERM.  name must outlive g. */
int ckpt__pickle_resolve(const char *module, const char *name, struct pv *g);

#endif

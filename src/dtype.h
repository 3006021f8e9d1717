/* dtype.h - the torch dtypes ckptfs knows: names as torch pickles them,
 * element sizes, and safetensors codes. */
#ifndef CKPT_DTYPE_H
#define CKPT_DTYPE_H

#include <stddef.h>

enum ckpt_dtype {
	CKPT_DT_INVALID = 0,
	CKPT_DT_F64, CKPT_DT_F32, CKPT_DT_F16, CKPT_DT_BF16,
	CKPT_DT_I64, CKPT_DT_I32, CKPT_DT_I16, CKPT_DT_I8,
	CKPT_DT_U8, CKPT_DT_U16, CKPT_DT_U32, CKPT_DT_U64, CKPT_DT_BOOL,
	CKPT_DT_F8_E4M3FN, CKPT_DT_F8_E5M2, CKPT_DT_F8_E4M3FNUZ, CKPT_DT_F8_E5M2FNUZ,
	CKPT_DT_F8_E8M0FNU, CKPT_DT_C32, CKPT_DT_C64, CKPT_DT_C128,
	CKPT_DT_COUNT
};

/* Maps a torch dtype name ("float32", "bfloat16", ...) to its enum value, or
 * CKPT_DT_INVALID.  Pure. */
enum ckpt_dtype ckpt_dtype_from_torch(const char *name);

/* Maps a legacy storage class name ("FloatStorage", ...) to its dtype, or
 * CKPT_DT_INVALID (also for quantized and untyped storages).  Pure. */
enum ckpt_dtype ckpt_dtype_from_storage(const char *name);

/* Maps a safetensors code ("F32", "BF16", ...) to its dtype, or
 * CKPT_DT_INVALID.  Pure. */
enum ckpt_dtype ckpt_dtype_from_st(const char *code);

/* The torch name, e.g. "float32"; "invalid" for CKPT_DT_INVALID. */
const char *ckpt_dtype_name(enum ckpt_dtype dt);

/* The safetensors code ("F32", "BF16", ...), or NULL when safetensors has
 * none (fnuz float8, complex32/128). */
const char *ckpt_dtype_st_code(enum ckpt_dtype dt);

/* Element size in bytes; 0 for CKPT_DT_INVALID. */
size_t ckpt_dtype_size(enum ckpt_dtype dt);

#endif

/* dtype.c - see dtype.h. */
#include "config.h"
#include "dtype.h"

#include <string.h>

static const struct {
	const char *torch, *storage, *st;
	size_t size;
} dtypes[CKPT_DT_COUNT] = {
	[CKPT_DT_INVALID]     = { "invalid", NULL, NULL, 0 },
	[CKPT_DT_F64]         = { "float64", "DoubleStorage", "F64", 8 },
	[CKPT_DT_F32]         = { "float32", "FloatStorage", "F32", 4 },
	[CKPT_DT_F16]         = { "float16", "HalfStorage", "F16", 2 },
	[CKPT_DT_BF16]        = { "bfloat16", "BFloat16Storage", "BF16", 2 },
	[CKPT_DT_I64]         = { "int64", "LongStorage", "I64", 8 },
	[CKPT_DT_I32]         = { "int32", "IntStorage", "I32", 4 },
	[CKPT_DT_I16]         = { "int16", "ShortStorage", "I16", 2 },
	[CKPT_DT_I8]          = { "int8", "CharStorage", "I8", 1 },
	[CKPT_DT_U8]          = { "uint8", "ByteStorage", "U8", 1 },
	[CKPT_DT_U16]         = { "uint16", NULL, "U16", 2 },
	[CKPT_DT_U32]         = { "uint32", NULL, "U32", 4 },
	[CKPT_DT_U64]         = { "uint64", NULL, "U64", 8 },
	[CKPT_DT_BOOL]        = { "bool", "BoolStorage", "BOOL", 1 },
	[CKPT_DT_F8_E4M3FN]   = { "float8_e4m3fn", NULL, "F8_E4M3", 1 },
	[CKPT_DT_F8_E5M2]     = { "float8_e5m2", NULL, "F8_E5M2", 1 },
	[CKPT_DT_F8_E4M3FNUZ] = { "float8_e4m3fnuz", NULL, NULL, 1 },
	[CKPT_DT_F8_E5M2FNUZ] = { "float8_e5m2fnuz", NULL, NULL, 1 },
	[CKPT_DT_F8_E8M0FNU]  = { "float8_e8m0fnu", NULL, "F8_E8M0", 1 },
	[CKPT_DT_C32]         = { "complex32", NULL, NULL, 4 },
	[CKPT_DT_C64]         = { "complex64", "ComplexFloatStorage", "C64", 8 },
	[CKPT_DT_C128]        = { "complex128", "ComplexDoubleStorage", NULL, 16 },
};

enum ckpt_dtype ckpt_dtype_from_torch(const char *name)
{
	for (int i = 1; i < CKPT_DT_COUNT; i++)
		if (strcmp(dtypes[i].torch, name) == 0)
			return (enum ckpt_dtype)i;
	return CKPT_DT_INVALID;
}

enum ckpt_dtype ckpt_dtype_from_storage(const char *name)
{
	for (int i = 1; i < CKPT_DT_COUNT; i++)
		if (dtypes[i].storage && strcmp(dtypes[i].storage, name) == 0)
			return (enum ckpt_dtype)i;
	return CKPT_DT_INVALID;
}

enum ckpt_dtype ckpt_dtype_from_st(const char *code)
{
	for (int i = 1; i < CKPT_DT_COUNT; i++)
		if (dtypes[i].st && strcmp(dtypes[i].st, code) == 0)
			return (enum ckpt_dtype)i;
	return CKPT_DT_INVALID;
}

const char *ckpt_dtype_name(enum ckpt_dtype dt)
{
	return (unsigned)dt < CKPT_DT_COUNT ? dtypes[dt].torch : "invalid";
}

const char *ckpt_dtype_st_code(enum ckpt_dtype dt)
{
	return (unsigned)dt < CKPT_DT_COUNT ? dtypes[dt].st : NULL;
}

size_t ckpt_dtype_size(enum ckpt_dtype dt)
{
	return (unsigned)dt < CKPT_DT_COUNT ? dtypes[dt].size : 0;
}

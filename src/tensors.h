/* tensors.h - the catalogue's data: every source tensor with its dtype,
 * global shape and chunks, each chunk bound to its storage item in one of
 * the source files.  Filled by the readers (catalog.c for DCP metadata,
 * stinput.c for safetensors headers) and read by everything downstream. */
#ifndef CKPT_TENSORS_H
#define CKPT_TENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "item.h"

struct ckpt_source_file {
	char *relpath;   /* as recorded in the metadata, checked to stay inside */
	int fd;
	uint64_t size;
};

struct ckpt_chunk {
	int64_t off[CKPT_MAXDIM], size[CKPT_MAXDIM];
	uint64_t numel;
	uint32_t file;            /* index into catalog->files */
	uint64_t item_off, item_len;
	int zstd;                 /* item is zstd-compressed (stream.zstd/1) */
	int decoded;              /* item below is valid */
	struct ckpt_item item;    /* layout inside the (decompressed) item */
};

struct ckpt_tensor {
	char *name;               /* the DCP fqn */
	enum ckpt_dtype dtype;
	int ndim;
	int64_t shape[CKPT_MAXDIM];
	uint64_t numel, nbytes;
	struct ckpt_chunk *chunks; /* non-empty chunks only, deduplicated, sorted by offset */
	size_t nchunks, chunks_cap;
	int holes;                /* chunks do not cover the tensor (allow_holes) */
};

/* Where a non-tensor (bytes) entry of a DCP checkpoint is stored: a
 * torch.save archive, not read by the catalogue (Megatron's common_state). */
struct ckpt_bytes_item {
	char *name;               /* the DCP fqn */
	char *relpath;            /* data file, as recorded (open with ckpt_open_inside) */
	uint64_t off, len;
	int zstd;                 /* stream.zstd/1 */
};

struct ckpt_catalog {
	char *dir;                /* the checkpoint directory as given */
	char *realdir;            /* its canonical path */
	char *md_desc;            /* which metadata files were read */
	int64_t mtime;            /* newest metadata file mtime (seconds) */
	struct ckpt_source_file *files;
	size_t nfiles;
	struct ckpt_tensor *tensors;  /* sorted by name */
	size_t ntensors;
	char **bytes;             /* names of non-tensor (bytes) entries */
	size_t nbytes;
	struct ckpt_bytes_item *bitems;  /* their storage, where .metadata records it */
	size_t nbitems;
	char **skipped;           /* entries of unknown kind, with the reason */
	size_t nskipped;
};

#endif

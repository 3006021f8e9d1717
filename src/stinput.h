/* stinput.h - safetensors inputs: the HuggingFace-flavoured DCP output of
 * torch >= 2.8 (HuggingFaceStorageWriter; per-rank shards whose __metadata__
 * carries DCP_SHARDING_INFO offsets, or full files) and plain safetensors
 * directories.  Fills the same catalogue as the .metadata reader: every
 * tensor with its chunks, each chunk a contiguous byte range of one file. */
#ifndef CKPT_STINPUT_H
#define CKPT_STINPUT_H

#include <jansson.h>
#include <stdint.h>

#include "err.h"
#include "tensors.h"

/* One tensor entry of a safetensors header. */
struct ckpt_st_entry {
	enum ckpt_dtype dtype;
	int ndim;
	int64_t shape[CKPT_MAXDIM];
	uint64_t numel, nbytes;
	uint64_t begin;   /* file offset of the first data byte */
};

/* Reads the safetensors header at file offset base (avail bytes after it):
 * *root gets the JSON object (json_decref it), *data_start the file offset of
 * the data section.  Errors name label and the byte offset. */
int ckpt_st_header_load(int fd, uint64_t base, uint64_t avail, const char *label, json_t **root,
			uint64_t *data_start, struct ckpt_err *e);

/* Validates header entry ent of tensor name (dtype, shape, offsets inside a
 * file of fsize bytes) into *out. */
int ckpt_st_entry(json_t *ent, const char *label, const char *name, uint64_t data_start,
		  uint64_t fsize, struct ckpt_st_entry *out, struct ckpt_err *e);

/* Reads the headers of every *.safetensors file directly in c->realdir (or
 * only the file called only, when not NULL) and adds their tensors to c
 * (files, tensors, chunks, already decoded).  The caller checks coverage.
 * Returns 0 or -errno with a message naming the file and byte offset or key. */
int ckpt_st_load(struct ckpt_catalog *c, const char *only, struct ckpt_err *e);

/* Whether dir directly holds at least one *.safetensors file. */
int ckpt_st_present(const char *dir);

#endif

/* stinput.h - safetensors inputs: the HuggingFace-flavoured DCP output of
 * torch >= 2.8 (HuggingFaceStorageWriter; per-rank shards whose __metadata__
 * carries DCP_SHARDING_INFO offsets, or full files) and plain safetensors
 * directories.  Fills the same catalogue as the .metadata reader: every
 * tensor with its chunks, each chunk a contiguous byte range of one file. */
#ifndef CKPT_STINPUT_H
#define CKPT_STINPUT_H

#include "err.h"
#include "tensors.h"

/* Reads the headers of every *.safetensors file directly in c->realdir and
 * adds their tensors to c (files, tensors, chunks, already decoded).  The
 * caller checks coverage.  Returns 0 or -errno with a message naming the
 * file and byte offset or key. */
int ckpt_st_load(struct ckpt_catalog *c, struct ckpt_err *e);

/* Whether dir directly holds at least one *.safetensors file. */
int ckpt_st_present(const char *dir);

#endif

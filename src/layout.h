/* layout.h - the files the mount shows: safetensors shards packed from the
 * view, the shard index, and asset files (config, tokenizer) passed through.
 * Every size and header is computed here from metadata alone. */
#ifndef CKPT_LAYOUT_H
#define CKPT_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "opts.h"
#include "view.h"

#define CKPT_HEADER_ALIGN 4096  /* data sections start on a page boundary */

enum ckpt_vf_kind { CKPT_VF_WEIGHTS, CKPT_VF_INDEX, CKPT_VF_ASSET };

struct ckpt_extent {
	uint64_t start;                 /* file offset of the tensor's first byte */
	const struct ckpt_vtensor *t;
};

struct ckpt_vfile {
	char *name;
	enum ckpt_vf_kind kind;
	uint64_t size;
	uint8_t *head;       /* WEIGHTS: 8-byte length + JSON header; INDEX, patched
	                        ASSET (config.json with the served dtype): whole file */
	uint64_t head_len;
	struct ckpt_extent *ext;  /* WEIGHTS: tensors in file order */
	size_t next;
	int fd;              /* ASSET: open source file */
};

struct ckpt_layout {
	struct ckpt_vfile *f;
	size_t n;
	size_t nweights;     /* safetensors files */
	uint64_t tensor_bytes;
};

/* Plans the files for view v: the base model's split when o->assets holds a
 * model.safetensors.index.json naming every tensor (a drop-in replacement),
 * else packing by o->max_shard_size.  Assets come from o->assets when set.
 * Immutable afterwards; safe to share between threads. */
int ckpt_layout_build(struct ckpt_layout *l, const struct ckpt_view *v, const struct ckpt_opts *o,
		      struct ckpt_err *e);
void ckpt_layout_free(struct ckpt_layout *l);

/* Index of the file called name, or -1. */
int ckpt_layout_find(const struct ckpt_layout *l, const char *name);

#endif

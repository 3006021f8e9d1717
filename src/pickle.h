/* pickle.h - an inert pickle reader.
 *
 * Parses pickle protocols 2-5 into a tree of plain values.  It never executes
 * anything: GLOBAL only resolves names against a whitelist of classes and
 * functions that DCP metadata and torch.save archives use (anything else is an
 * error), REDUCE/NEWOBJ build inert "object" nodes, BUILD attaches state.
 * Module aliases are folded: torch.distributed._shard.checkpoint.X reads as
 * torch.distributed.checkpoint.X.  All values live in an arena owned by the
 * struct ckpt_pickle and are freed together; the arena may not grow past
 * 64 times the input size plus 64 MiB, so no pickle can exhaust memory. */
#ifndef CKPT_PICKLE_H
#define CKPT_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#include "pvalue.h"

struct pk_block;
struct ckpt_pickle {
	struct pk_block *blocks;  /* arena */
	struct pv *root;
	size_t arena_bytes, arena_limit;  /* memory used, and the bound set by the input size */
};

/* Parses buf[0..len) as one pickle.  label names the source in messages
 * (e.g. "ckpt/.metadata").  On success p->root is the result and the caller
 * must ckpt_pickle_free(p); on failure everything is already freed.
 * Reentrant: no global state. */
int ckpt_pickle_parse(struct ckpt_pickle *p, const uint8_t *buf, size_t len,
		      const char *label, struct ckpt_err *e);

/* Frees the arena of a parsed pickle.  Safe on a zeroed struct. */
void ckpt_pickle_free(struct ckpt_pickle *p);

#endif

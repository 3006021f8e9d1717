/* margs.h - the training args of a Megatron-LM checkpoint.
 *
 * Megatron-LM saves its argparse.Namespace of training arguments under
 * "args" in its common state: common.pt (a torch.save archive next to the
 * DCP payload) or a common_state item inside it.  This
 * reads it with the inert pickle reader (never executing anything; a class
 * outside the whitelist refuses the whole file) and returns the Namespace's
 * attributes as a JSON object: integers, booleans, floats, strings, None and
 * lists of those.  Attributes of any other kind (torch dtypes, enums, ...)
 * are left out rather than guessed at. */
#ifndef CKPT_MARGS_H
#define CKPT_MARGS_H

#include <jansson.h>

#include "err.h"
#include "tensors.h"

/* Reads the args of checkpoint c: from <dir>/common.pt, else from the
 * common_state bytes entry of the DCP payload (newer Megatron-Core keeps the
 * common state there as a ShardedObject: a torch.save of the list of its
 * shards' data).  Returns 0 with *out NULL when neither holds args, 0 with a
 * new JSON object in *out (the caller's to json_decref) and where[0..n)
 * naming the source ("common.pt" or the entry's name), or -errno with a
 * message naming the file or item. */
int ckpt_megatron_args(const struct ckpt_catalog *c, json_t **out, char *where, size_t n,
		       struct ckpt_err *e);

#endif

/* margs.h - the training args of a Megatron-LM checkpoint.
 *
 * Megatron-LM saves its argparse.Namespace of training arguments under
 * "args" in common.pt (a torch.save archive next to the DCP payload).  This
 * reads it with the inert pickle reader (never executing anything; a class
 * outside the whitelist refuses the whole file) and returns the Namespace's
 * attributes as a JSON object: integers, booleans, floats, strings, None and
 * lists of those.  Attributes of any other kind (torch dtypes, enums, ...)
 * are left out rather than guessed at. */
#ifndef CKPT_MARGS_H
#define CKPT_MARGS_H

#include <jansson.h>

#include "err.h"

/* Reads <ckpt_dir>/common.pt.  Returns 0 with *out NULL when there is no
 * common.pt or it holds no args, 0 with a new JSON object in *out (the
 * caller's to json_decref), or -errno with a message naming the file. */
int ckpt_megatron_args(const char *ckpt_dir, json_t **out, struct ckpt_err *e);

#endif

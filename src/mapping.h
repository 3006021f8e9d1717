/* mapping.h - name and layout mapping described as data (the JSON rule files in mapping/).
 *
 * A rule file holds ordered rules.  A rule matches source names with a POSIX
 * extended regex (after the common wrapper strip) and either drops the
 * tensor or makes one or more output tensors from it: optionally unstacking
 * leading axes (Megatron's layer and expert axes), then applying ops that
 * select boxes of the source (slice, groups for GQA-interleaved QKV, rope for
 * the Llama RoPE row permutation, squeeze) or transpose the last two dims.  Names are templates with
 * {expressions} over captures ($1), unstack variables and config params.
 * Parameters come from the assets' config.json or, without one, from a
 * Megatron checkpoint's training args through the file's "megatron_args"
 * table (HF config key -> expression over the args).  Every source tensor must be
 * consumed or dropped by some rule (unless mapping_strict=0), and declared
 * output shapes are checked before anything is served.
 *
 * File format (all keys optional except rules):
 *   { "name": "...", "description": "...", "priority": 10,
 *     "extends": "other.json",   (its rules follow these; its params fill the gaps)
 *     "detect": { "keys": [regex...], "keys_any": [regex...], "keys_none": [regex...],
 *                 "architectures": [...], "model_types": [...],
 *                 "megatron": true, "config": true, "args": true },
 *     "params": { "hd": "head_dim ?? hidden_size / num_attention_heads" },
 *     "megatron_args": { "head_dim": "kv_channels", ... },
 *     "rules": [ { "match": "^regex$", "drop": true, "when": "expr",
 *                  "unstack": ["L", "E"],
 *                  "from_capture": { "L": 2 },  (L is capture 2 when it matched: no axis)
 *                  "out": "template", "ops": [...], "shape": ["expr", ...],
 *                  "concat": ["template", ...],   (other sources appended along dim 0)
 *                  "outputs": [ { "out": ..., "ops": ..., "shape": ..., "when": ... } ] } ] }
 *   ops: {"op": "slice", "dim": 0, "start": "expr", "stop": "expr"}
 *        {"op": "groups", "count": "expr", "stride": "expr", "offset": "expr", "size": "expr"}
 *        {"op": "rope", "heads": "expr"}
 *        {"op": "transpose"}   (an element transpose of the last two dims)
 *        {"op": "squeeze"}
 */
#ifndef CKPT_MAPPING_H
#define CKPT_MAPPING_H

#include <stddef.h>

#include "err.h"
#include "mapfile.h"
#include "recipe.h"

/* Applies m to the source tensors src[i] known as names[i] and adds the
 * outputs to v (and the dropped ones to v->skipped).  With strict set, a
 * source no rule consumes is an error; otherwise it is listed as skipped. */
int ckpt_mapping_apply(const struct ckpt_mapping *m, struct ckpt_view *v,
		       struct ckpt_tensor *const *src, char *const *names, size_t n, int strict,
		       struct ckpt_err *e);

#endif

/* bagel.h - BAGEL (ByteDance BAGEL-7B-MoT) state dicts in the naming stage.
 *
 * BAGEL's model directory is its own format: one ema.safetensors (or
 * model.safetensors) under BAGEL's key names, which are served unchanged.
 * Keys fall into the classes NeMo AutoModel's BAGEL adapter defines
 * (converters.md section 5): UND (language model, SigLIP ViT, connector,
 * ViT position embedding), GEN (the Mixture-of-Transformers *_moe_gen
 * siblings, norm_moe_gen, time embedder, vae2llm, llm2vae, latent position
 * embedding) and VAE (encoder.*, decoder.*).  -o bagel_stage=1 serves UND,
 * 2 UND+GEN, the default every key.  A key in no class is refused (or, with
 * mapping_strict=0, left out and listed), never dropped silently. */
#ifndef CKPT_BAGEL_H
#define CKPT_BAGEL_H

#include <stddef.h>

#include "err.h"
#include "recipe.h"

enum ckpt_bagel_class {
	CKPT_BAGEL_UND, CKPT_BAGEL_GEN, CKPT_BAGEL_VAE, CKPT_BAGEL_EXTRA, CKPT_BAGEL_UNKNOWN
};

/* Whether names are BAGEL keys: language_model.model.embed_tokens.weight
 * together with a ViT, connector, time embedder or *_moe_gen tensor. */
int ckpt_bagel_detect(char *const *names, size_t n);

/* The class of one BAGEL key (first match in the order extra state, UND,
 * GEN, VAE), CKPT_BAGEL_UNKNOWN when none matches or on regcomp failure. */
enum ckpt_bagel_class ckpt_bagel_class(const char *name);

/* Adds src[i] under names[i] to v for every key of stage (0 all, 1 UND,
 * 2 UND+GEN); the others go to v->skipped with the reason.  Unknown keys
 * are an error naming them when strict, else skipped with a warning.
 * file is the weights file name to serve ("ema.safetensors" or
 * "model.safetensors"); sets v->weights_file and v->note (the stage, class
 * counts and the ViT patch-embedding layout).  Returns 0 or -errno. */
int ckpt_bagel_apply(struct ckpt_view *v, struct ckpt_tensor *const *src, char *const *names,
		     size_t n, int stage, int strict, const char *file, struct ckpt_err *e);

#endif

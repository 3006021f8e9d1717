/* bagel.c - see bagel.h.  The patterns are those of NeMo AutoModel's
 * nemo_automodel/components/models/bagel/state_dict_adapter.py, written as
 * POSIX extended regular expressions. */
#include "config.h"
#include "bagel.h"

#include <errno.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LAYER "^language_model\\.model\\.layers\\.[0-9]+\\."

static const char *const und_re[] = {
	"^language_model\\.model\\.embed_tokens\\.weight$",
	"^language_model\\.model\\.norm\\.weight$",
	"^language_model\\.lm_head\\.weight$",
	LAYER "self_attn\\.(q|k|v|qkv)_proj\\.(weight|bias)$",
	LAYER "self_attn\\.o_proj\\.weight$",
	LAYER "self_attn\\.(q|k)_norm\\.weight$",
	LAYER "mlp\\.(gate|up|down|gate_up)_proj\\.weight$",
	LAYER "(input|post_attention)_layernorm\\.weight$",
	"^vit_model\\.",
	"^connector\\.fc[12]\\.(weight|bias)$",
	"^vit_pos_embed\\.pos_embed$",
};

static const char *const gen_re[] = {
	LAYER "self_attn\\.(q|k|v|qkv)_proj_moe_gen\\.(weight|bias)$",
	LAYER "self_attn\\.o_proj_moe_gen\\.weight$",
	LAYER "self_attn\\.(q|k)_norm_moe_gen\\.weight$",
	LAYER "mlp_moe_gen\\.(gate|up|down|gate_up)_proj\\.weight$",
	LAYER "(input|post_attention)_layernorm_moe_gen\\.weight$",
	"^language_model\\.model\\.norm_moe_gen\\.weight$",
	"^time_embedder\\.mlp\\.[02]\\.(weight|bias)$",
	"^(vae2llm|llm2vae)\\.(weight|bias)$",
	"^latent_pos_embed\\.pos_embed$",
};

static const char *const vae_re[] = { "^(encoder|decoder)\\." };
static const char *const extra_re[] = { "\\._extra_state$" };

#define NUND (sizeof(und_re) / sizeof(und_re[0]))
#define NGEN (sizeof(gen_re) / sizeof(gen_re[0]))

static regex_t und_rx[NUND], gen_rx[NGEN], vae_rx[1], extra_rx[1];
static int compiled;  /* 1 ok, -1 failed */
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void compile_all(void)
{
	struct { const char *const *src; regex_t *rx; size_t n; } sets[] = {
		{ und_re, und_rx, NUND }, { gen_re, gen_rx, NGEN }, { vae_re, vae_rx, 1 },
		{ extra_re, extra_rx, 1 },
	};
	compiled = 1;
	for (size_t s = 0; s < 4; s++)
		for (size_t i = 0; i < sets[s].n; i++)
			if (regcomp(&sets[s].rx[i], sets[s].src[i], REG_EXTENDED | REG_NOSUB))
				compiled = -1;  /* the patterns are constant: only ENOMEM */
}

static int any(const regex_t *rx, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (regexec(&rx[i], name, 0, NULL, 0) == 0)
			return 1;
	return 0;
}

enum ckpt_bagel_class ckpt_bagel_class(const char *name)
{
	pthread_once(&once, compile_all);
	if (compiled < 0)
		return CKPT_BAGEL_UNKNOWN;
	if (any(extra_rx, 1, name))
		return CKPT_BAGEL_EXTRA;
	if (any(und_rx, NUND, name))
		return CKPT_BAGEL_UND;
	if (any(gen_rx, NGEN, name))
		return CKPT_BAGEL_GEN;
	if (any(vae_rx, 1, name))
		return CKPT_BAGEL_VAE;
	return CKPT_BAGEL_UNKNOWN;
}

int ckpt_bagel_detect(char *const *names, size_t n)
{
	int embed = 0, other = 0;
	for (size_t i = 0; i < n; i++) {
		const char *k = names[i];
		if (!strcmp(k, "language_model.model.embed_tokens.weight"))
			embed = 1;
		else if (!strncmp(k, "vit_model.", 10) || !strncmp(k, "connector.", 10) ||
			 !strncmp(k, "time_embedder.", 14) || strstr(k, "_moe_gen."))
			other = 1;
	}
	return embed && other;
}

static const char *skip_reason(enum ckpt_bagel_class c, int stage)
{
	if (c == CKPT_BAGEL_EXTRA)
		return "TransformerEngine _extra_state, not a weight";
	if (c == CKPT_BAGEL_GEN)
		return "BAGEL GEN tensor, not part of -o bagel_stage=1";
	if (c == CKPT_BAGEL_VAE)
		return stage == 1 ? "BAGEL VAE tensor, not part of -o bagel_stage=1"
				  : "BAGEL VAE tensor, not part of -o bagel_stage=2";
	return NULL;
}

static const char *const patch_embed = "vit_model.vision_model.embeddings.patch_embedding.weight";

int ckpt_bagel_apply(struct ckpt_view *v, struct ckpt_tensor *const *src, char *const *names,
		     size_t n, int stage, int strict, const char *file, struct ckpt_err *e)
{
	size_t count[5] = { 0 }, nunknown = 0;
	char unknown[600] = "", patch[160] = "";
	int rc = 0;

	pthread_once(&once, compile_all);
	if (compiled < 0)
		return ckpt_err_set(e, -ENOMEM, "out of memory compiling the BAGEL key patterns");
	for (size_t i = 0; i < n; i++) {
		enum ckpt_bagel_class c = ckpt_bagel_class(names[i]);
		count[c]++;
		if (c == CKPT_BAGEL_UNKNOWN && nunknown++ < 5) {
			size_t l = strlen(unknown);
			snprintf(unknown + l, sizeof(unknown) - l, "%s'%s'", l ? ", " : "", names[i]);
		}
	}
	if (nunknown && strict)
		return ckpt_err_set(e, -EINVAL, "BAGEL checkpoint: %zu key%s match%s no UND, GEN or VAE "
				    "pattern of the BAGEL adapter: %s%s; -o mapping_strict=0 leaves "
				    "them out", nunknown, nunknown == 1 ? "" : "s",
				    nunknown == 1 ? "es" : "", unknown, nunknown > 5 ? ", ..." : "");
	if (nunknown)
		ckpt_warn("BAGEL checkpoint: %zu key%s in no BAGEL class left out (mapping_strict=0): %s%s",
			  nunknown, nunknown == 1 ? "" : "s", unknown, nunknown > 5 ? ", ..." : "");
	for (size_t i = 0; i < n && !rc; i++) {
		enum ckpt_bagel_class c = ckpt_bagel_class(names[i]);
		int keep = c == CKPT_BAGEL_UND || (c == CKPT_BAGEL_GEN && stage != 1) ||
			   (c == CKPT_BAGEL_VAE && stage == 0);
		if (c == CKPT_BAGEL_UNKNOWN) {
			rc = ckpt_view_add_skip(v, names[i], "in no BAGEL key class (mapping_strict=0)");
			continue;
		}
		if (!keep) {
			rc = ckpt_view_add_skip(v, names[i], skip_reason(c, stage));
			continue;
		}
		struct ckpt_tensor *t = src[i];
		struct ckpt_vtensor *vt = ckpt_view_add(v, names[i], t->dtype, t->ndim, t->shape);
		if (!vt || ckpt_vtensor_add_box(vt, t, NULL, NULL))
			return ckpt_err_set(e, -ENOMEM, "out of memory");
		if (!strcmp(names[i], patch_embed)) {
			size_t k = (size_t)snprintf(patch, sizeof(patch), "%s [",
						   t->ndim == 4 ? "conv" : t->ndim == 2 ? "linear"
						   : "unrecognised");
			for (int d = 0; d < t->ndim && k < sizeof(patch); d++)
				k += (size_t)snprintf(patch + k, sizeof(patch) - k, "%s%lld", d ? ", " : "",
						      (long long)t->shape[d]);
			if (k < sizeof(patch))
				snprintf(patch + k, sizeof(patch) - k, "]%s",
					 t->ndim == 4 ? " (out, in, P, P)" :
					 t->ndim == 2 ? " (out, in*P*P)" : "");
		}
	}
	if (rc)
		return ckpt_err_set(e, rc, "out of memory");
	static const char *const stages[] = { "all keys", "stage 1: UND", "stage 2: UND+GEN" };
	char note[512];
	snprintf(note, sizeof(note), "BAGEL %s, %s (%zu UND, %zu GEN, %zu VAE keys in the source); "
		 "ViT patch embedding: %s", file, stages[stage >= 0 && stage <= 2 ? stage : 0],
		 count[CKPT_BAGEL_UND], count[CKPT_BAGEL_GEN], count[CKPT_BAGEL_VAE],
		 patch[0] ? patch : "none");
	v->weights_file = file;
	if (!(v->note = strdup(note)))
		return ckpt_err_set(e, -ENOMEM, "out of memory");
	return 0;
}

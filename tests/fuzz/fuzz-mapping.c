/* fuzz-mapping.c - libFuzzer harness for the mapping engine: the input is a
 * rule file, optionally followed by a NUL byte and a config.json.  The rules
 * are loaded and applied to a fixed set of source tensors shaped like
 * Megatron, TorchTitan and plain checkpoints; every output recipe must then
 * cover exactly its tensor's elements with boxes inside their sources. */
#include "config.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mapping.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ckpt_tensor src[] = {
	{ .name = "decoder.layers.self_attention.linear_qkv.weight", .dtype = CKPT_DT_F32, .ndim = 3,
	  .shape = { 2, 36, 12 } },
	{ .name = "decoder.layers.mlp.linear_fc1.weight", .dtype = CKPT_DT_F32, .ndim = 3, .shape = { 2, 48, 12 } },
	{ .name = "embedding.word_embeddings.weight", .dtype = CKPT_DT_BF16, .ndim = 2, .shape = { 104, 12 } },
	{ .name = "layers.0.attention.wq.weight", .dtype = CKPT_DT_F32, .ndim = 2, .shape = { 16, 12 } },
	{ .name = "layers.1.mlp.experts.gate_up_proj", .dtype = CKPT_DT_F16, .ndim = 3, .shape = { 4, 8, 6 } },
	{ .name = "norm.weight", .dtype = CKPT_DT_F32, .ndim = 1, .shape = { 12 } },
	{ .name = "step", .dtype = CKPT_DT_I64, .ndim = 0 },
};
#define NSRC (sizeof(src) / sizeof(src[0]))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64];
	struct ckpt_tensor *ptr[NSRC];
	char *names[NSRC];
	const uint8_t *nul = memchr(data, 0, size);
	size_t rl = nul ? (size_t)(nul - data) : size;
	json_t *config = nul ? json_loadb((const char *)nul + 1, size - rl - 1, 0, NULL) : NULL;
	struct ckpt_mapping *m = NULL;
	struct ckpt_view v = { 0 };
	struct ckpt_err e = { 0 };

	if (!path[0])
		snprintf(path, sizeof(path), "/tmp/ckptfs-fuzz-mapping-%d.json", (int)getpid());
	FILE *f = fopen(path, "wb");
	if (!f)
		abort();
	fwrite(data, 1, rl, f);
	fclose(f);
	for (size_t i = 0; i < NSRC; i++) {
		src[i].numel = 1;
		for (int d = 0; d < src[i].ndim; d++)
			src[i].numel *= (uint64_t)src[i].shape[d];
		ptr[i] = &src[i];
		names[i] = src[i].name;
	}
	if (ckpt_mapping_load(&m, path, config, &e) == 0) {
		(void)ckpt_mapping_detect(m, ptr, names, NSRC, "/nonexistent");
		if (ckpt_mapping_apply(m, &v, ptr, names, NSRC, size % 2, &e) == 0) {
			for (size_t i = 0; i < v.n; i++) {
				const struct ckpt_vtensor *t = &v.t[i];
				uint64_t total = 0;
				for (size_t k = 0; k < t->nseg; k++) {
					const struct ckpt_segment *sg = &t->seg[k];
					for (int d = 0; d < sg->src->ndim; d++)
						if (sg->lo[d] < 0 || sg->lo[d] > sg->hi[d] ||
						    sg->hi[d] > sg->src->shape[d])
							abort();  /* a box outside its source */
					total += sg->numel;
				}
				if (total != t->numel)
					abort();  /* the recipe does not make the tensor */
			}
		}
		ckpt_view_free(&v);
		ckpt_mapping_free(m);
	}
	json_decref(config);
	return 0;
}

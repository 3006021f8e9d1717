/* assets.h - where config.json and the tokenizer files come from when
 * -o assets is not given, in this order:
 *
 *  1. next to the weights: veRL's huggingface/, AutoModel's .hf_metadata/,
 *     VeOmni's model_assets/ (in the checkpoint directory or its parent), or
 *     a HuggingFace config.json in the checkpoint directory, the step or the
 *     run root (a config.json that is a run config does not count);
 *  2. the directory a TorchTitan run config names: hf_assets_path, or
 *     model.hf_assets_path in older versions, of a config.json or
 *     job_config.json in the checkpoint directory, the step or the run root;
 *  3. the directory a Megatron-Bridge run_config.yaml (checkpoint directory
 *     or run root) names as model.extra_checkpoint_metadata.hf_model_id or
 *     model.hf_model_id.
 *
 * Relative paths are taken from the run config's directory.  A run config
 * entry that is not a directory on this machine (e.g. a Hub id) is skipped
 * with a warning naming it. */
#ifndef CKPT_ASSETS_H
#define CKPT_ASSETS_H

/* Returns the canonical assets directory for the checkpoint in ckpt_dir
 * (malloc'd), or NULL when there is none.  *origin (malloc'd, or NULL) says
 * where it was found, e.g. "hf_assets_path in /run/config.json". */
char *ckpt_assets_find(const char *ckpt_dir, char **origin);

/* The value at the key path keys[0].keys[1]... of a block-style YAML file
 * (mappings only; quotes and trailing comments removed), malloc'd, or NULL
 * when absent, null or empty.  Files over 16 MiB are not read. */
char *ckpt_yaml_get(const char *path, const char *const *keys, int nkeys);

#endif

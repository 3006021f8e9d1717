/* view.c - see view.h. */
#include "config.h"
#include "view.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bagel.h"
#include "convert.h"
#include "dirlist.h"
#include "jsonfile.h"
#include "mapping.h"
#include "margs.h"
#include "strmap.h"

/* Why a DCP entry is not a model weight, or NULL if it is one. */
static const char *non_model_reason(const char *fqn)
{
	static const char *const roots[] = {
		"optimizer", "optim", "lr_scheduler", "dataloader", "train_state",
	};
	size_t l = strlen(fqn);
	const char *dot = strchr(fqn, '.');
	size_t rl = dot ? (size_t)(dot - fqn) : l;

	for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++)
		if (strlen(roots[i]) == rl && strncmp(fqn, roots[i], rl) == 0)
			return "training state, not a model weight";
	if (rl == 3 && strncmp(fqn, "ema", 3) == 0)
		return "EMA weights (-o view=ema serves them instead of the trained weights)";
	if (strstr(fqn, "_extra_state"))
		return "TransformerEngine _extra_state, not a weight";
	if (l >= 11 && strcmp(fqn + l - 11, "_flat_param") == 0)
		return "FSDP1 flat parameter (LOCAL_STATE_DICT): per-parameter shapes are not stored";
	return NULL;
}

const char *ckpt_mapping_dir(void)
{
	static char dir[PATH_MAX + 32];
	const char *env = getenv("CKPTFS_MAPPING_DIR");
	char exe[PATH_MAX];
	ssize_t n;

	if (env && *env)
		return env;
	if (access(CKPTFS_PKGDATADIR "/mapping", F_OK) == 0)
		return CKPTFS_PKGDATADIR "/mapping";
	if ((n = readlink("/proc/self/exe", exe, sizeof(exe) - 1)) > 0) {
		exe[n] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = '\0';
			/* src/ckptfs or src/.libs/ckptfs in the build tree */
			static const char *const rel[] = { "/../mapping", "/../../mapping" };
			for (int i = 0; i < 2; i++) {
				char cand[PATH_MAX + 32];
				snprintf(cand, sizeof(cand), "%s%s", exe, rel[i]);
				if (realpath(cand, dir))
					return dir;
			}
		}
	}
	return CKPTFS_PKGDATADIR "/mapping";
}

static int is_json(const char *n)
{
	size_t l = strlen(n);
	return n[0] != '.' && l > 5 && !strcmp(n + l - 5, ".json");
}

/* Loads the rule file at path; without a config.json its parameters come
 * from the Megatron args (when the file has a megatron_args table). */
static int load_mapping(struct ckpt_mapping **out, const char *path, json_t *config,
			json_t *args, const char *where, const char *ckpt_dir, struct ckpt_err *e)
{
	char label[PATH_MAX + 300];
	int rc = ckpt_mapping_load(out, path, config, e);
	if (rc || config || !args)
		return rc;
	snprintf(label, sizeof(label), strcmp(where, "common.pt") ? "%s: DCP item %s" : "%s/%s",
		 ckpt_dir, where);
	if ((rc = ckpt_mapping_use_args(*out, args, label, e))) {
		ckpt_mapping_free(*out);
		*out = NULL;
	}
	return rc;
}

/* Picks the mapping for these names: -o mapping=FILE, or the detected rule
 * file with the highest priority (auto).  *out stays NULL when none fits. */
static int choose_mapping(struct ckpt_mapping **out, const struct ckpt_opts *o, json_t *config,
			  json_t *args, const char *where, struct ckpt_tensor *const *src,
			  char *const *names, size_t n,
			  const char *ckpt_dir, struct ckpt_err *e)
{
	const char *dir = ckpt_mapping_dir();
	char **files, path[PATH_MAX];
	size_t nf;
	int best = INT_MIN, rc;

	*out = NULL;
	if (o->mapping && strcmp(o->mapping, "auto") != 0)
		return load_mapping(out, o->mapping, config, args, where, ckpt_dir, e);
	if (ckpt_dir_list(dir, is_json, &files, &nf))
		return 0;  /* no rule files installed: raw names */
	for (size_t i = 0; i < nf; i++) {
		struct ckpt_mapping *m;
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		if ((rc = load_mapping(&m, path, config, args, where, ckpt_dir, e))) {
			ckpt_names_free(files, nf);
			return rc;
		}
		int prio = ckpt_mapping_priority(m);
		if (ckpt_mapping_detect(m, src, names, n, ckpt_dir) && prio > best) {
			ckpt_mapping_free(*out);
			*out = m;
			best = prio;
		} else {
			ckpt_mapping_free(m);
		}
	}
	ckpt_names_free(files, nf);
	return 0;
}

static json_t *load_config(const char *assets)
{
	char path[PATH_MAX];
	if (!assets)
		return NULL;
	snprintf(path, sizeof(path), "%s/config.json", assets);
	return ckpt_json_load(path, 0, NULL);
}

/* dtype=auto: the config's torch_dtype (or transformers 5 "dtype"). */
static enum ckpt_dtype config_dtype(json_t *config)
{
	const char *s = json_string_value(json_object_get(config, "torch_dtype"));
	if (!s)
		s = json_string_value(json_object_get(config, "dtype"));
	return s ? ckpt_dtype_from_torch(s) : CKPT_DT_INVALID;
}

/* Floating tensors are served in the asked dtype; integer, bool and fp8
 * tensors stay as stored. */
static void apply_dtype(struct ckpt_view *v, enum ckpt_dtype to)
{
	v->served = to;
	if (to == CKPT_DT_INVALID)
		return;
	for (size_t i = 0; i < v->n; i++) {
		struct ckpt_vtensor *t = &v->t[i];
		if (t->dtype != to && ckpt_convert_supported(t->dtype, to)) {
			t->dtype = to;
			t->nbytes = t->numel * ckpt_dtype_size(to);
		}
	}
}

/* -o view=ema: every model tensor F is replaced by its EMA copy
 * ema.state.F.ema_params.K (TorchTitan); an EMA tensor that matches no model
 * tensor is an error, as is a choice of K left open. */
static int use_ema(struct ckpt_catalog *c, struct ckpt_tensor **keep, size_t nkeep,
		   const char *want_key, struct ckpt_err *e)
{
	static const char pre[] = "ema.state.", mid[] = ".ema_params.";
	size_t used = 0, total = 0;
	struct strmap by_model = { 0 };
	int rc = 0;

	for (size_t i = 0; i < nkeep; i++)
		if (strmap_put(&by_model, keep[i]->name, &keep[i]))
			return ckpt_err_set(e, -ENOMEM, "out of memory");
	for (size_t i = 0; i < c->ntensors && !rc; i++) {
		struct ckpt_tensor *t = &c->tensors[i];
		const char *m;
		if (strncmp(t->name, pre, sizeof(pre) - 1) || !(m = strstr(t->name, mid)))
			continue;
		const char *k = m + sizeof(mid) - 1;
		if (want_key && strcmp(k, want_key))
			continue;
		total++;
		char *fqn = strndup(t->name + sizeof(pre) - 1, (size_t)(m - t->name) - (sizeof(pre) - 1));
		struct ckpt_tensor **slot = fqn ? strmap_get(&by_model, fqn) : NULL;
		if (!fqn)
			rc = ckpt_err_set(e, -ENOMEM, "out of memory");
		else if (!slot)
			rc = ckpt_err_set(e, -EINVAL, "%s: EMA tensor '%s' has no trained weight '%s'",
					  c->md_desc, t->name, fqn);
		else if (strncmp((*slot)->name, pre, sizeof(pre) - 1) == 0)
			rc = ckpt_err_set(e, -EINVAL, "%s: '%s' has several EMA copies; choose one with "
					  "-o ema_key=KEY (e.g. %s)", c->md_desc, fqn, k);
		else if ((*slot)->dtype != t->dtype || (*slot)->ndim != t->ndim ||
			 memcmp((*slot)->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim))
			rc = ckpt_err_set(e, -EINVAL, "%s: EMA tensor '%s' differs in dtype or shape from "
					  "'%s'", c->md_desc, t->name, fqn);
		else {
			*slot = t;
			used++;
		}
		free(fqn);
	}
	strmap_free(&by_model);
	if (!rc && total == 0)
		rc = ckpt_err_set(e, -ENOENT, "%s: -o view=ema, but the checkpoint holds no "
				  "ema.state.<name>.ema_params.%s tensors", c->md_desc,
				  want_key ? want_key : "<key>");
	return rc;
}

/* AutoModel's .hf_metadata/fqn_to_dtype_mapping.json ({"name": "BF16"};
 * safetensors codes or torch names): the original HF dtype of each tensor.
 * Looked for beside the weights, then in the assets directory.  NULL when
 * there is none; path gets the file read. */
static json_t *load_dtype_map(const char *realdir, const char *assets, char *path, size_t n)
{
	const char *dirs[] = { realdir, assets };
	for (int i = 0; i < 2; i++) {
		if (!dirs[i])
			continue;
		snprintf(path, n, "%s/%s", dirs[i], i ? "fqn_to_dtype_mapping.json"
						     : ".hf_metadata/fqn_to_dtype_mapping.json");
		json_t *m = ckpt_json_load(path, 0, NULL);
		if (m)
			return m;
	}
	return NULL;
}

/* Serves every tensor the map names in its mapped dtype (a conversion from
 * the stored one, or the stored one itself). */
static int apply_dtype_map(struct ckpt_view *v, json_t *map, const char *path, struct ckpt_err *e)
{
	if (!json_is_object(map))
		return ckpt_err_set(e, -EINVAL, "%s: expected a JSON object of tensor name -> dtype", path);
	for (size_t i = 0; i < v->n; i++) {
		struct ckpt_vtensor *t = &v->t[i];
		json_t *val = json_object_get(map, t->name);
		const char *s = json_string_value(val);
		if (!val)
			continue;
		enum ckpt_dtype dt = s ? ckpt_dtype_from_st(s) : CKPT_DT_INVALID;
		if (s && dt == CKPT_DT_INVALID)
			dt = ckpt_dtype_from_torch(strncmp(s, "torch.", 6) ? s : s + 6);
		enum ckpt_dtype stored = t->nseg ? t->seg[0].src->dtype : t->dtype;
		if (dt == CKPT_DT_INVALID)
			return ckpt_err_set(e, -EINVAL, "%s: tensor '%s': '%s' is not a dtype", path, t->name,
					    s ? s : "(not a string)");
		if (dt != stored && !ckpt_convert_supported(stored, dt))
			return ckpt_err_set(e, -EINVAL, "%s: tensor '%s' is stored as %s and cannot be "
					    "served as %s", path, t->name, ckpt_dtype_name(stored),
					    ckpt_dtype_name(dt));
		t->dtype = dt;
		t->nbytes = t->numel * ckpt_dtype_size(dt);
		v->dtype_mapped++;
	}
	return 0;
}

/* BAGEL's file name: the trained weights when the source or -o view says
 * so (or they come from a model.safetensors or a directory called model),
 * else the EMA copy BAGEL loads; NULL for -o view=ema of a model.safetensors. */
static const char *bagel_file(const struct ckpt_opts *o, const struct ckpt_catalog *c)
{
	const char *base = strrchr(c->realdir, '/');
	int model_file = 0;

	base = base ? base + 1 : c->realdir;
	for (size_t i = 0; i < c->nfiles; i++)
		model_file |= !strcmp(c->files[i].relpath, "model.safetensors");
	if (o->source_view)
		return o->source_view == 1 ? "model.safetensors" : "ema.safetensors";
	if (o->view_ema && model_file)
		return NULL;  /* the trained weights cannot be served as the EMA copy */
	if (o->view_model || (!o->view_ema && (model_file || !strcmp(base, "model"))))
		return "model.safetensors";
	return "ema.safetensors";
}

static int cmp_vt(const void *a, const void *b)
{
	return ckpt_natcmp(((const struct ckpt_vtensor *)a)->name,
			   ((const struct ckpt_vtensor *)b)->name);
}

int ckpt_view_build(struct ckpt_view *v, struct ckpt_catalog *c, const struct ckpt_opts *o,
		    struct ckpt_err *e)
{
	size_t plen = 0;
	int rc = 0;

	memset(v, 0, sizeof(*v));
	struct ckpt_tensor **keep = calloc(c->ntensors ? c->ntensors : 1, sizeof(*keep));
	size_t nkeep = 0;
	if (!keep)
		return ckpt_err_set(e, -ENOMEM, "out of memory");
	for (size_t i = 0; i < c->nbytes && !rc; i++)
		rc = ckpt_view_add_skip(v, c->bytes[i], "non-tensor (bytes) entry");
	for (size_t i = 0; i < c->nskipped && !rc; i++)
		rc = ckpt_view_add_skip(v, c->skipped[i], "skipped");
	for (size_t i = 0; i < c->ntensors && !rc; i++) {
		struct ckpt_tensor *t = &c->tensors[i];
		const char *why = o->keep_all ? NULL : non_model_reason(t->name);
		if (!why && !ckpt_dtype_st_code(t->dtype))
			why = "dtype has no safetensors code";
		if (why) {
			rc = ckpt_view_add_skip(v, t->name, why);
			continue;
		}
		keep[nkeep++] = t;
	}
	if (rc)
		goto fail;
	/* BAGEL keys are served as they are (only AutoModel's "model." root goes) */
	int bagel = 0;
	char **raw = calloc(nkeep ? nkeep : 1, sizeof(*raw));
	if (!raw)
		goto oom;
	for (size_t i = 0; i < nkeep; i++)
		raw[i] = keep[i]->name;
	if (!o->keep_all && ckpt_bagel_detect(raw, nkeep))
		bagel = 1;
	free(raw);
	/* one shared top-level wrapper, e.g. "model." */
	if (!o->keep_all && !bagel && nkeep > 0) {
		const char *first = keep[0]->name, *dot = strchr(first, '.');
		plen = dot ? (size_t)(dot - first) + 1 : 0;
		for (size_t i = 1; i < nkeep && plen; i++)
			if (strncmp(keep[i]->name, first, plen) != 0)
				plen = 0;
		if (plen && !(v->stripped = strndup(first, plen - 1)))
			goto oom;
	}
	char **names = calloc(nkeep ? nkeep : 1, sizeof(*names));
	if (!names)
		goto oom;
	for (size_t i = 0; i < nkeep; i++)
		names[i] = keep[i]->name + plen;  /* the trained weight's name, also under view=ema */
	if (!o->keep_all && !bagel && plen && ckpt_bagel_detect(names, nkeep))
		bagel = 1;
	if (o->view_ema && !o->source_view && !bagel &&
	    (rc = use_ema(c, keep, nkeep, o->ema_key, e))) {
		free(names);
		free(keep);
		ckpt_view_free(v);
		return rc;
	}
	struct ckpt_mapping *m = NULL;
	json_t *config = load_config(o->assets), *args = NULL;
	char where[256] = "";
	if (bagel && !bagel_file(o, c)) {
		rc = ckpt_err_set(e, -ENOENT, "%s: -o view=ema, but this BAGEL checkpoint holds only "
				  "model.safetensors (no ema.safetensors)", c->dir);
	} else if (bagel) {
		rc = ckpt_bagel_apply(v, keep, names, nkeep, o->bagel_stage, !o->mapping_lax,
				      bagel_file(o, c), e);
	} else if (!o->keep_all && !(o->mapping && !strcmp(o->mapping, "none"))) {
		/* without a config.json, a Megatron checkpoint's training args */
		if (!config && (rc = ckpt_megatron_args(c, &args, where, sizeof(where), e)))
			ckpt_err_prefix(e, "reading the Megatron training args for the mapping "
					"parameters (-o assets=DIR with a config.json skips this)");
		if (!rc)
			rc = choose_mapping(&m, o, config, args, where, keep, names, nkeep, c->realdir, e);
	}
	if (!rc && m) {
		char label[600];
		int from_args = ckpt_mapping_params_from_args(m);
		snprintf(label, sizeof(label), "%s%s%s%s", ckpt_mapping_name(m),
			 from_args ? " (parameters from the Megatron args in " : "", from_args ? where : "",
			 from_args ? ")" : "");
		if (!(v->mapping = strdup(label)))
			rc = -ENOMEM;
		else
			rc = ckpt_mapping_apply(m, v, keep, names, nkeep, !o->mapping_lax, e);
	}
	json_decref(args);
	for (size_t i = 0; i < nkeep && !rc && !m && !bagel; i++) {
		struct ckpt_tensor *t = keep[i];
		struct ckpt_vtensor *vt = ckpt_view_add(v, names[i], t->dtype, t->ndim, t->shape);
		if (!vt || ckpt_vtensor_add_box(vt, t, NULL, NULL))
			rc = -ENOMEM;
	}
	ckpt_mapping_free(m);
	if (!rc)
		apply_dtype(v, o->dtype_auto ? config_dtype(config) : o->dtype);
	if (!rc && !o->keep_all && !o->dtype_orig && (o->dtype == CKPT_DT_INVALID || o->dtype_auto)) {
		char mpath[PATH_MAX + 64];
		json_t *map = load_dtype_map(c->realdir, o->assets, mpath, sizeof(mpath));
		if (map)
			rc = apply_dtype_map(v, map, mpath, e);
		json_decref(map);
	}
	json_decref(config);
	free(names);
	free(keep);
	if (rc) {
		ckpt_view_free(v);
		return rc == -ENOMEM ? ckpt_err_set(e, rc, "out of memory") : rc;
	}
	if (v->n > 1)
		qsort(v->t, v->n, sizeof(*v->t), cmp_vt);
	return 0;
oom:
	rc = -ENOMEM;
fail:
	free(keep);
	ckpt_view_free(v);
	return ckpt_err_set(e, rc, "out of memory");
}


/* mapfile.c - loading a rule file (with "extends"), detection, and the
 * parameters made from Megatron training args; see mapping.h. */
#include "config.h"
#include "mapfile.h"
#include "mapping-int.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "expr.h"
#include "jsonfile.h"

/* "extends": the named rule file of the same directory supplies the rules
 * that follow this file's own ones, and the params and megatron_args this
 * file does not set.  Its detect section is not inherited. */
static int resolve_extends(json_t *root, const char *path, int depth, struct ckpt_err *e)
{
	json_t *ext = json_object_get(root, "extends");
	char base[PATH_MAX];
	json_error_t je;

	if (!ext)
		return 0;
	const char *name = json_string_value(ext), *slash = strrchr(path, '/');
	if (!name || !*name || strchr(name, '/') || name[0] == '.')
		return ckpt_err_set(e, -EINVAL, "%s: \"extends\" must name a rule file of the same "
				    "directory", path);
	if (depth >= 4)
		return ckpt_err_set(e, -ELOOP, "%s: \"extends\" nested more than 4 deep", path);
	snprintf(base, sizeof(base), "%.*s%s", slash ? (int)(slash - path + 1) : 0, path, name);
	json_t *b = ckpt_json_load(base, JSON_REJECT_DUPLICATES, &je);
	if (!b)
		return ckpt_err_set(e, -EINVAL, "%s (extended by %s): line %d: %s", base, path, je.line,
				    je.text);
	int rc = resolve_extends(b, base, depth + 1, e);
	json_t *rules = json_array(), *own = json_object_get(root, "rules"), *br = json_object_get(b, "rules");
	if (!rc && (!rules || (json_is_array(own) && json_array_extend(rules, own)) ||
		    (json_is_array(br) && json_array_extend(rules, br)) ||
		    json_object_set(root, "rules", rules)))
		rc = ckpt_err_set(e, -ENOMEM, "out of memory");
	static const char *const merged[] = { "params", "megatron_args" };
	for (size_t i = 0; i < 2 && !rc; i++) {
		json_t *mine = json_object_get(root, merged[i]), *theirs = json_object_get(b, merged[i]);
		if (!json_is_object(theirs))
			continue;
		if (!mine && json_object_set_new(root, merged[i], (mine = json_object())))
			rc = ckpt_err_set(e, -ENOMEM, "out of memory");
		else if (json_object_update_missing(mine, theirs))
			rc = ckpt_err_set(e, -EINVAL, "%s: \"%s\" must be an object", path, merged[i]);
	}
	json_decref(rules);
	json_decref(b);
	return rc;
}

/* Reads a rule's "from_capture" object into r->capture. */
static int read_from_capture(struct mrule *r, json_t *un)
{
	json_t *fc = json_object_get(r->j, "from_capture"), *v;
	const char *var;

	if (!fc)
		return 0;
	if (!json_is_object(fc))
		return -EINVAL;
	json_object_foreach(fc, var, v) {
		size_t k;
		for (k = 0; k < r->nunstack; k++)
			if (!strcmp(var, json_string_value(json_array_get(un, k)) ?: ""))
				break;
		if (k == r->nunstack || !json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > 9)
			return -EINVAL;
		r->capture[k] = (int)json_integer_value(v);
	}
	return 0;
}

int ckpt_mapping_load(struct ckpt_mapping **out, const char *path, void *config,
		      struct ckpt_err *e)
{
	json_error_t je;
	struct ckpt_mapping *m = calloc(1, sizeof(*m));
	int rc = 0;

	*out = NULL;
	if (!m || !(m->path = strdup(path))) {
		free(m);
		return ckpt_err_set(e, -ENOMEM, "out of memory");
	}
	m->config = config;
	if (!(m->root = ckpt_json_load(path, JSON_REJECT_DUPLICATES, &je))) {
		rc = ckpt_err_set(e, -EINVAL, "%s: line %d: %s", path, je.line, je.text);
		goto fail;
	}
	if ((rc = resolve_extends(m->root, path, 0, e)))
		goto fail;
	json_t *rules = json_object_get(m->root, "rules");
	if (!json_is_array(rules) || !json_array_size(rules)) {
		rc = ckpt_err_set(e, -EINVAL, "%s: expected a non-empty \"rules\" list", path);
		goto fail;
	}
	m->r = calloc(json_array_size(rules), sizeof(*m->r));
	if (!m->r) {
		rc = ckpt_err_set(e, -ENOMEM, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < json_array_size(rules); i++) {
		json_t *r = json_array_get(rules, i);
		const char *match = json_string_value(json_object_get(r, "match"));
		if (!json_is_object(r) || !match) {
			rc = ckpt_err_set(e, -EINVAL, "%s: rule %zu has no \"match\" regex", path, i);
			goto fail;
		}
		int rr = regcomp(&m->r[i].re, match, REG_EXTENDED);
		if (rr) {
			char buf[256];
			regerror(rr, &m->r[i].re, buf, sizeof(buf));
			rc = ckpt_err_set(e, -EINVAL, "%s: rule %zu: bad regex '%s': %s", path, i, match, buf);
			goto fail;
		}
		m->n++;
		m->r[i].j = r;
		m->r[i].drop = json_is_true(json_object_get(r, "drop"));
		json_t *un = json_object_get(r, "unstack");
		if (un && (!json_is_array(un) || json_array_size(un) > 4)) {
			rc = ckpt_err_set(e, -EINVAL, "%s: rule %zu: \"unstack\" must list up to 4 variable "
					  "names", path, i);
			goto fail;
		}
		m->r[i].nunstack = un ? json_array_size(un) : 0;
		if (read_from_capture(&m->r[i], un)) {
			rc = ckpt_err_set(e, -EINVAL, "%s: rule %zu: \"from_capture\" must map unstack "
					  "variables to capture numbers 1-9", path, i);
			goto fail;
		}
		if (!m->r[i].drop && !json_object_get(r, "out") && !json_is_array(json_object_get(r, "outputs"))) {
			rc = ckpt_err_set(e, -EINVAL, "%s: rule %zu ('%s') has neither \"drop\", \"out\" nor "
					  "\"outputs\"", path, i, match);
			goto fail;
		}
	}
	*out = m;
	return 0;
fail:
	ckpt_mapping_free(m);
	return rc;
}

void ckpt_mapping_free(struct ckpt_mapping *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++)
		regfree(&m->r[i].re);
	free(m->r);
	json_decref(m->own_config);
	free(m->args_label);
	json_decref(m->root);
	free(m->path);
	free(m);
}

const char *ckpt_mapping_name(const struct ckpt_mapping *m)
{
	const char *n = json_string_value(json_object_get(m->root, "name"));
	return n ? n : m->path;
}

int ckpt_mapping_priority(const struct ckpt_mapping *m)
{
	return (int)json_integer_value(json_object_get(m->root, "priority"));
}

/* Looks names up in the Megatron args object (ctx): integers and booleans. */
static int args_lookup(void *ctx, const char *s, size_t len, int64_t *out)
{
	char key[128];
	if (len >= sizeof(key))
		return -ENOENT;
	memcpy(key, s, len);
	key[len] = '\0';
	json_t *v = json_object_get(ctx, key);
	if (json_is_integer(v))
		*out = json_integer_value(v);
	else if (json_is_boolean(v))
		*out = json_is_true(v);
	else
		return -ENOENT;
	return 0;
}

int ckpt_mapping_use_args(struct ckpt_mapping *m, void *args, const char *label,
			  struct ckpt_err *e)
{
	json_t *table = json_object_get(m->root, "megatron_args"), *v;
	const char *key;

	if (m->config || !args || !table)
		return 0;
	if (!json_is_object(table))
		return ckpt_err_set(e, -EINVAL, "%s: \"megatron_args\" must be an object", m->path);
	json_t *cfg = json_object();
	if (!cfg)
		return ckpt_err_set(e, -ENOMEM, "out of memory");
	json_object_foreach(table, key, v) {
		int64_t val;
		struct ckpt_err scratch = { 0 };
		if (!json_is_string(v)) {
			json_decref(cfg);
			return ckpt_err_set(e, -EINVAL, "%s: megatron_args '%s' must be an expression string",
					    m->path, key);
		}
		int rc = ckpt_expr_eval(json_string_value(v), args_lookup, args, &val, &scratch);
		if (rc == -ENOENT)
			continue;  /* the args do not define it: a rule that needs it refuses */
		if (rc || json_object_set_new(cfg, key, json_integer(val))) {
			json_decref(cfg);
			return ckpt_err_set(e, rc ? rc : -ENOMEM, "%s: megatron_args '%s' (over the args of %s): %s",
					    m->path, key, label, rc ? scratch.msg : "out of memory");
		}
	}
	if (!(m->args_label = strdup(label))) {
		json_decref(cfg);
		return ckpt_err_set(e, -ENOMEM, "out of memory");
	}
	m->own_config = m->config = cfg;
	return 0;
}

int ckpt_mapping_params_from_args(const struct ckpt_mapping *m)
{
	return m->own_config != NULL;
}

/* Whether regex (a JSON string) matches at least one of names; a bad regex
 * matches nothing. */
static int some_name_matches(json_t *regex, char *const *names, size_t n)
{
	regex_t re;
	int found = 0;
	if (!json_is_string(regex) || regcomp(&re, json_string_value(regex), REG_EXTENDED | REG_NOSUB))
		return 0;
	for (size_t k = 0; k < n && !found; k++)
		found = regexec(&re, names[k], 0, NULL, 0) == 0;
	regfree(&re);
	return found;
}

int ckpt_mapping_detect(const struct ckpt_mapping *m, struct ckpt_tensor *const *src,
			char *const *names, size_t n, const char *ckpt_dir)
{
	json_t *d = json_object_get(m->root, "detect"), *v;
	size_t i, k;
	(void)src;

	if (!d)
		return 0;  /* only by -o mapping=FILE */
	json_array_foreach(json_object_get(d, "keys"), i, v)
		if (!some_name_matches(v, names, n))
			return 0;  /* every "keys" regex must match some name */
	json_t *any = json_object_get(d, "keys_any");
	if (any) {
		int found = 0;
		json_array_foreach(any, i, v)
			found |= some_name_matches(v, names, n);
		if (!found)
			return 0;
	}
	json_array_foreach(json_object_get(d, "keys_none"), i, v)
		if (some_name_matches(v, names, n))
			return 0;  /* no "keys_none" regex may match */
	if (m->own_config && !json_is_true(json_object_get(d, "args")))
		return 0;  /* parameters from Megatron args: only files that say they can use them */
	json_t *arch = json_object_get(d, "architectures");
	if ((arch || json_object_get(d, "model_types")) && !m->own_config) {
		/* the config names one of the architectures, or one of the model_types */
		int found = 0;
		json_t *have = json_object_get(m->config, "architectures"), *h;
		json_t *mt = json_object_get(m->config, "model_type");
		json_array_foreach(arch, i, v)
			json_array_foreach(have, k, h)
				found |= json_is_string(v) && json_is_string(h) &&
					 !strcmp(json_string_value(v), json_string_value(h));
		json_array_foreach(json_object_get(d, "model_types"), i, v)
			found |= json_is_string(v) && json_is_string(mt) &&
				 !strcmp(json_string_value(v), json_string_value(mt));
		if (!found)
			return 0;
	}
	if (json_is_true(json_object_get(d, "config")) && !m->config)
		return 0;
	if (json_is_false(json_object_get(d, "config")) && m->config)
		return 0;
	if (json_is_true(json_object_get(d, "megatron"))) {
		char p[PATH_MAX];
		snprintf(p, sizeof(p), "%s/metadata.json", ckpt_dir);
		if (access(p, F_OK) != 0)
			return 0;
	}
	return 1;
}

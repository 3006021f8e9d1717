/* mapping.c - applying a loaded rule file (mapfile.c) to the source tensors:
 * expressions over captures, unstack variables and params, name templates,
 * the ops and the output recipes; see mapping.h. */
#include "config.h"
#include "mapping.h"
#include "mapping-int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expr.h"

#define MAX_NAME 1024

/* Expression environment for one source tensor. */
struct env {
	const struct ckpt_mapping *m;
	char *const *names;              /* every source, for "concat" */
	struct ckpt_tensor *const *srcs;
	size_t nsrc;
	const char *name;
	const regmatch_t *pm;
	const char *vars[4];
	int64_t vals[4];
	int nvars;
	int axis_var[4];                 /* unstacked leading axis a holds variable axis_var[a] */
	int nax;
	int depth;
	struct ckpt_err *e;
};

static int lookup(void *ctx, const char *s, size_t len, int64_t *out);

static int eval(struct env *env, json_t *expr, int64_t *out, const char *what)
{
	if (json_is_integer(expr)) {
		*out = json_integer_value(expr);
		return 0;
	}
	if (json_is_boolean(expr)) {
		*out = json_is_true(expr);
		return 0;
	}
	if (!json_is_string(expr))
		return ckpt_err_set(env->e, -EINVAL, "%s: %s must be an integer or an expression string",
				    env->m->path, what);
	int rc = ckpt_expr_eval(json_string_value(expr), lookup, env, out, env->e);
	if (rc)
		ckpt_err_prefix(env->e, "%s: %s (source '%s')", env->m->path, what, env->name);
	return rc;
}

static int lookup(void *ctx, const char *s, size_t len, int64_t *out)
{
	struct env *env = ctx;
	char key[128];
	json_t *v;

	if (len >= sizeof(key))
		return -ENOENT;
	memcpy(key, s, len);
	key[len] = '\0';
	if (key[0] == '$') {  /* capture $N as an integer */
		int n = atoi(key + 1);
		if (n < 1 || n > 9 || !env->pm || env->pm[n].rm_so < 0)
			return -ENOENT;
		char *end;
		const char *p = env->name + env->pm[n].rm_so;
		long long val = strtoll(p, &end, 10);
		if (end != env->name + env->pm[n].rm_eo || end == p)
			return -ENOENT;
		*out = val;
		return 0;
	}
	for (int i = 0; i < env->nvars; i++)
		if (!strcmp(env->vars[i], key)) {
			*out = env->vals[i];
			return 0;
		}
	json_t *params = json_object_get(env->m->root, "params");
	if ((v = json_object_get(params, key)) && env->depth < 16) {
		struct ckpt_err scratch = { 0 };
		struct ckpt_err *saved = env->e;
		env->depth++;
		env->e = &scratch;
		int rc = eval(env, v, out, key);
		env->e = saved;
		env->depth--;
		return rc ? -ENOENT : 0;
	}
	if ((v = json_object_get(env->m->config, key)) ||
	    (v = json_object_get(json_object_get(env->m->config, "text_config"), key))) {
		if (json_is_integer(v)) {
			*out = json_integer_value(v);
			return 0;
		}
		if (json_is_boolean(v)) {
			*out = json_is_true(v);
			return 0;
		}
		if (json_is_null(v))
			return -ENOENT;
	}
	if (!strcmp(key, "true") || !strcmp(key, "false")) {
		*out = key[0] == 't';
		return 0;
	}
	return -ENOENT;
}

/* Renders a name template: {$N} inserts capture N as text, {expr} an integer. */
static int render(struct env *env, const char *tmpl, char *out, size_t cap)
{
	size_t n = 0;
	for (const char *p = tmpl; *p;) {
		if (*p != '{') {
			if (n + 1 >= cap)
				goto long_name;
			out[n++] = *p++;
			continue;
		}
		const char *close = strchr(p, '}');
		if (!close)
			return ckpt_err_set(env->e, -EINVAL, "%s: template '%s': unclosed '{'",
					    env->m->path, tmpl);
		char inner[256];
		size_t il = (size_t)(close - p - 1);
		if (il >= sizeof(inner))
			return ckpt_err_set(env->e, -EINVAL, "%s: template '%s': expression too long",
					    env->m->path, tmpl);
		memcpy(inner, p + 1, il);
		inner[il] = '\0';
		int k;
		char tail;
		if (sscanf(inner, "$%d%c", &k, &tail) == 1 && k >= 1 && k <= 9 && env->pm &&
		    env->pm[k].rm_so >= 0) {
			size_t cl = (size_t)(env->pm[k].rm_eo - env->pm[k].rm_so);
			if (n + cl >= cap)
				goto long_name;
			memcpy(out + n, env->name + env->pm[k].rm_so, cl);
			n += cl;
		} else {
			int64_t v;
			json_t *js = json_string(inner);
			int rc = eval(env, js, &v, "name template");
			json_decref(js);
			if (rc)
				return rc;
			int w = snprintf(out + n, cap - n, "%lld", (long long)v);
			if (w < 0 || (size_t)w >= cap - n)
				goto long_name;
			n += (size_t)w;
		}
		p = close + 1;
	}
	out[n] = '\0';
	return 0;
long_name:
	return ckpt_err_set(env->e, -ENAMETOOLONG, "%s: template '%s' makes a name that is too long",
			    env->m->path, tmpl);
}


/* An output under construction: boxes of the source concatenated along the
 * first logical dim; logical dims are the source dims after the unstacked
 * ones (map[d] = source dim of logical dim d). */
struct piece_set {
	struct ckpt_tensor *src;
	int ndim;                      /* logical */
	int map[CKPT_MAXDIM];
	int64_t shape[CKPT_MAXDIM];
	int64_t (*lo)[CKPT_MAXDIM];
	int64_t (*hi)[CKPT_MAXDIM];
	size_t n, cap;
	int split;                     /* pieces were split: only squeeze may follow */
	int transpose;                 /* the last two logical dims are swapped */
};

static int ps_push(struct piece_set *ps, const int64_t *lo, const int64_t *hi)
{
	if (ps->n == ps->cap) {
		size_t nc = ps->cap ? ps->cap * 2 : 4;
		void *nl = realloc(ps->lo, nc * sizeof(*ps->lo)), *nh;
		if (!nl)
			return -ENOMEM;
		ps->lo = nl;
		if (!(nh = realloc(ps->hi, nc * sizeof(*ps->hi))))
			return -ENOMEM;
		ps->hi = nh;
		ps->cap = nc;
	}
	memcpy(ps->lo[ps->n], lo, sizeof(*ps->lo));
	memcpy(ps->hi[ps->n], hi, sizeof(*ps->hi));
	ps->n++;
	return 0;
}

#define OPFAIL(...) ckpt_err_set(env->e, -EINVAL, __VA_ARGS__)

static int op_apply(struct env *env, struct piece_set *ps, json_t *op, size_t idx)
{
	const char *kind = json_string_value(json_object_get(op, "op"));
	const char *path = env->m->path;
	int64_t a, b, c, d;
	int rc;

	if (!kind)
		return OPFAIL("%s: op %zu has no \"op\" name", path, idx);
	if (!strcmp(kind, "squeeze")) {
		int nd = 0;
		for (int i = 0; i < ps->ndim; i++)
			if (ps->shape[i] != 1) {
				ps->shape[nd] = ps->shape[i];
				ps->map[nd++] = ps->map[i];
			}
		ps->ndim = nd;
		return 0;
	}
	if (ps->split || ps->transpose)
		return OPFAIL("%s: op '%s' after a split or transpose of '%s': only squeeze may follow",
			      path, kind, env->name);
	if (!strcmp(kind, "transpose")) {
		/* an element transpose of the last two dims; the others must be 1 */
		if (ps->ndim < 2)
			return OPFAIL("%s: transpose of '%s', which has fewer than 2 dims", path, env->name);
		for (int i = 0; i < ps->ndim - 2; i++)
			if (ps->shape[i] != 1)
				return OPFAIL("%s: transpose of '%s': only the last two dims may exceed 1 "
					      "(squeeze or unstack the others first)", path, env->name);
		if (ps->map[ps->ndim - 2] != ps->src->ndim - 2 || ps->map[ps->ndim - 1] != ps->src->ndim - 1)
			return OPFAIL("%s: transpose of '%s' must act on its last two dims", path, env->name);
		int64_t tmp = ps->shape[ps->ndim - 1];
		ps->shape[ps->ndim - 1] = ps->shape[ps->ndim - 2];
		ps->shape[ps->ndim - 2] = tmp;
		ps->transpose = 1;
		return 0;
	}
	if (!strcmp(kind, "slice")) {
		json_t *dj = json_object_get(op, "dim");
		int dim = json_is_integer(dj) ? (int)json_integer_value(dj) : 0;
		if (dim < 0 || dim >= ps->ndim)
			return OPFAIL("%s: slice dim %d of '%s', which has %d dims", path, dim, env->name,
				      ps->ndim);
		a = 0;
		if ((json_object_get(op, "start") &&
		     (rc = eval(env, json_object_get(op, "start"), &a, "slice start"))) ||
		    (rc = eval(env, json_object_get(op, "stop"), &b, "slice stop")))
			return rc;
		if (a < 0 || b < a || b > ps->shape[dim])
			return OPFAIL("%s: slice [%lld, %lld) of dim %d of '%s' (size %lld) is out of range: "
				      "the config does not match the checkpoint", path, (long long)a,
				      (long long)b, dim, env->name, (long long)ps->shape[dim]);
		int sd = ps->map[dim];
		ps->hi[0][sd] = ps->lo[0][sd] + b;
		ps->lo[0][sd] += a;
		ps->shape[dim] = b - a;
		return 0;
	}
	if (!strcmp(kind, "groups") || !strcmp(kind, "rope")) {
		/* dim 0 is the concatenation dim of the pieces */
		if (ps->ndim < 1)
			return OPFAIL("%s: %s on 0-d '%s'", path, kind, env->name);
		int sd = ps->map[0];
		int64_t base = ps->lo[0][sd], rows = ps->shape[0];
		int64_t lo[CKPT_MAXDIM], hi[CKPT_MAXDIM];
		memcpy(lo, ps->lo[0], sizeof(lo));
		memcpy(hi, ps->hi[0], sizeof(hi));
		ps->n = 0;
		ps->split = 1;
		if (!strcmp(kind, "groups")) {
			if ((rc = eval(env, json_object_get(op, "count"), &a, "groups count")) ||
			    (rc = eval(env, json_object_get(op, "stride"), &b, "groups stride")) ||
			    (rc = eval(env, json_object_get(op, "offset"), &c, "groups offset")) ||
			    (rc = eval(env, json_object_get(op, "size"), &d, "groups size")))
				return rc;
			if (a < 1 || b < 1 || c < 0 || d < 1 || c + d > b || a * b != rows)
				return OPFAIL("%s: groups (count %lld, stride %lld, offset %lld, size %lld) do not "
					      "tile dim 0 of '%s' (%lld rows): the config does not match "
					      "the checkpoint", path, (long long)a, (long long)b, (long long)c,
					      (long long)d, env->name, (long long)rows);
			for (int64_t g = 0; g < a; g++) {
				lo[sd] = base + g * b + c;
				hi[sd] = lo[sd] + d;
				if (ps_push(ps, lo, hi))
					return -ENOMEM;
			}
			ps->shape[0] = a * d;
			return 0;
		}
		if ((rc = eval(env, json_object_get(op, "heads"), &a, "rope heads")))
			return rc;
		if (a < 1 || rows % a || (rows / a) % 2)
			return OPFAIL("%s: rope with %lld heads on '%s' with %lld rows: the rows are not whole "
				      "heads of even size: the config does not match the checkpoint", path,
				      (long long)a, env->name, (long long)rows);
		int64_t hd = rows / a;
		for (int64_t r = 0; r < rows; r++) {
			int64_t h = r / hd, rem = r % hd, j = rem / (hd / 2), i = rem % (hd / 2);
			lo[sd] = base + h * hd + 2 * i + j;
			hi[sd] = lo[sd] + 1;
			if (ps_push(ps, lo, hi))
				return -ENOMEM;
		}
		return 0;
	}
	return OPFAIL("%s: unknown op '%s' (slice, groups, rope, transpose, squeeze)", path, kind);
}

/* The source called name, or -1. */
static long find_source(const struct env *env, const char *name)
{
	for (size_t i = 0; i < env->nsrc; i++)
		if (!strcmp(env->names[i], name))
			return (long)i;
	return -1;
}

/* "concat": the named sources' whole boxes follow the matched one along
 * dim 0; they must agree in dtype and in every other dim. */
static int add_concat(struct env *env, struct ckpt_vtensor *vt, json_t *list,
		      const struct ckpt_tensor *first)
{
	char other[MAX_NAME];
	size_t i;
	json_t *tmpl;
	int rc;

	json_array_foreach(list, i, tmpl) {
		if (!json_is_string(tmpl))
			return ckpt_err_set(env->e, -EINVAL, "%s: concat entries must be name templates",
					    env->m->path);
		if ((rc = render(env, json_string_value(tmpl), other, sizeof(other))))
			return rc;
		long j = find_source(env, other);
		if (j < 0)
			return ckpt_err_set(env->e, -EINVAL, "%s: '%s' is to be concatenated with '%s', "
					    "which the checkpoint does not hold", env->m->path, env->name, other);
		struct ckpt_tensor *t = env->srcs[j];
		int same = t->dtype == first->dtype && t->ndim == first->ndim && t->ndim > 0;
		for (int d = 1; d < t->ndim && same; d++)
			same = t->shape[d] == first->shape[d];
		if (!same)
			return ckpt_err_set(env->e, -EINVAL, "%s: '%s' and '%s' differ in dtype or in a dim "
					    "other than the first: they cannot be concatenated", env->m->path,
					    env->name, other);
		if ((rc = ckpt_vtensor_add_box(vt, t, NULL, NULL)))
			return ckpt_err_set(env->e, rc, "out of memory");
		vt->shape[0] += t->shape[0];
		vt->numel += t->numel;
		vt->nbytes += t->nbytes;
	}
	return 0;
}

/* Makes one output of rule r from src at the current unstack indices. */
static int make_output(struct env *env, struct ckpt_view *v, const struct mrule *r, json_t *o,
		       struct ckpt_tensor *src)
{
	struct piece_set ps = { .src = src };
	int64_t lo[CKPT_MAXDIM], hi[CKPT_MAXDIM];
	char name[MAX_NAME];
	size_t i;
	json_t *op;
	int rc;

	if (json_object_get(o, "when")) {
		int64_t ok;
		if ((rc = eval(env, json_object_get(o, "when"), &ok, "when")))
			return rc;
		if (!ok)
			return 0;
	}
	if (src->ndim < env->nax)
		return ckpt_err_set(env->e, -EINVAL, "%s: '%s' has %d dims, fewer than the %d to unstack",
				    env->m->path, env->name, src->ndim, env->nax);
	for (int d = 0; d < src->ndim; d++) {
		lo[d] = 0;
		hi[d] = src->shape[d];
		if (d < env->nax) {
			lo[d] = env->vals[env->axis_var[d]];
			hi[d] = lo[d] + 1;
		} else {
			ps.map[ps.ndim] = d;
			ps.shape[ps.ndim++] = src->shape[d];
		}
	}
	if ((rc = ps_push(&ps, lo, hi)))
		goto out;
	json_array_foreach(json_object_get(o, "ops"), i, op)
		if ((rc = op_apply(env, &ps, op, i)))
			goto out;
	json_t *shape = json_object_get(o, "shape");
	if (shape) {
		json_t *sv;
		int bad = !json_is_array(shape) || (int)json_array_size(shape) != ps.ndim;
		json_array_foreach(shape, i, sv) {
			int64_t want;
			if (bad)
				break;
			if ((rc = eval(env, sv, &want, "shape")))
				goto out;
			bad = want != ps.shape[i];
		}
		if (bad) {
			char got[256];
			size_t k = 0;
			for (int d = 0; d < ps.ndim && k < sizeof(got); d++)
				k += (size_t)snprintf(got + k, sizeof(got) - k, "%s%lld", d ? ", " : "",
						      (long long)ps.shape[d]);
			char *want = json_dumps(shape, JSON_COMPACT);
			rc = ckpt_err_set(env->e, -EINVAL, "%s: '%s' gives shape [%s], but the rule expects "
					  "%s from the config: the config does not match the checkpoint",
					  env->m->path, env->name, got, want ? want : "?");
			free(want);
			goto out;
		}
	}
	const char *tmpl = json_string_value(json_object_get(o, "out"));
	if (!tmpl) {
		rc = ckpt_err_set(env->e, -EINVAL, "%s: an output for '%s' has no \"out\" name template",
				  env->m->path, env->name);
		goto out;
	}
	if ((rc = render(env, tmpl, name, sizeof(name))))
		goto out;
	struct ckpt_vtensor *vt = ckpt_view_add(v, name, src->dtype, ps.ndim, ps.shape);
	if (!vt) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t k = 0; k < ps.n && !rc; k++)
		if (!(rc = ckpt_vtensor_add_box(vt, src, ps.lo[k], ps.hi[k])))
			vt->seg[vt->nseg - 1].transpose = ps.transpose;
	if (rc) {
		ckpt_err_set(env->e, rc, "%s: '%s': a box leaves the source tensor", env->m->path, env->name);
	} else if (json_object_get(o, "concat")) {
		if (r->nunstack || json_array_size(json_object_get(o, "ops")) || ps.n != 1)
			rc = ckpt_err_set(env->e, -EINVAL, "%s: concat of '%s' cannot be combined with "
					  "unstack or ops", env->m->path, env->name);
		else
			rc = add_concat(env, vt, json_object_get(o, "concat"), src);
	}
out:
	free(ps.lo);
	free(ps.hi);
	if (rc == -ENOMEM)
		ckpt_err_set(env->e, rc, "out of memory");
	return rc;
}

/* The first rule whose regex matches env->name and whose "when" holds
 * (env->pm gets the captures); NULL when none, *rc set on an error. */
static const struct mrule *find_rule(const struct ckpt_mapping *m, struct env *env, int *rc)
{
	for (size_t i = 0; i < m->n; i++) {
		if (regexec(&m->r[i].re, env->name, 10, (regmatch_t *)env->pm, 0) != 0)
			continue;
		json_t *when = json_object_get(m->r[i].j, "when");
		int64_t ok = 1;
		env->nvars = 0;
		if (when && (*rc = eval(env, when, &ok, "when")))
			return NULL;
		if (ok)
			return &m->r[i];
	}
	return NULL;
}

/* Runs every output of rule r for all unstack index combinations. */
static int apply_rule(struct env *env, struct ckpt_view *v, const struct mrule *r,
		      struct ckpt_tensor *src)
{
	json_t *un = json_object_get(r->j, "unstack"), *outs = json_object_get(r->j, "outputs");
	size_t i;
	json_t *o;
	int rc = 0;

	env->nvars = (int)r->nunstack;
	env->nax = 0;
	for (size_t k = 0; k < r->nunstack; k++) {
		env->vars[k] = json_string_value(json_array_get(un, k));
		env->vals[k] = 0;
		if (!env->vars[k])
			return ckpt_err_set(env->e, -EINVAL, "%s: unstack names must be strings", env->m->path);
		int c = r->capture[k];
		if (c && env->pm[c].rm_so >= 0) {  /* the name carries the index: no axis */
			char var[4] = { '$', (char)('0' + c), '\0' };
			if (lookup(env, var, 2, &env->vals[k]))
				return ckpt_err_set(env->e, -EINVAL, "%s: capture %d of '%s' is not an index",
						    env->m->path, c, env->name);
			continue;
		}
		if (env->nax < src->ndim && src->shape[env->nax] == 0)
			return 0;
		env->axis_var[env->nax++] = (int)k;
	}
	for (;;) {
		if (json_is_array(outs)) {
			json_array_foreach(outs, i, o)
				if ((rc = make_output(env, v, r, o, src)))
					return rc;
		} else if ((rc = make_output(env, v, r, r->j, src))) {
			return rc;
		}
		/* next index combination, last unstacked dim fastest */
		int a = env->nax - 1;
		while (a >= 0 && ++env->vals[env->axis_var[a]] == src->shape[a]) {
			env->vals[env->axis_var[a]] = 0;
			a--;
		}
		if (a < 0)
			return 0;
	}
}

static int cmp_vt_name(const void *a, const void *b)
{
	return strcmp(((const struct ckpt_vtensor *)a)->name, ((const struct ckpt_vtensor *)b)->name);
}

int ckpt_mapping_apply(const struct ckpt_mapping *m, struct ckpt_view *v,
		       struct ckpt_tensor *const *src, char *const *names, size_t n, int strict,
		       struct ckpt_err *e)
{
	regmatch_t pm[10];
	char msg[1200];
	size_t unmatched = 0;
	int rc = 0;
	char *used = calloc(n + 1, 1);  /* consumed by another source's "concat" */

	if (!used)
		return ckpt_err_set(e, -ENOMEM, "out of memory");
	for (size_t s = 0; s < n && !rc; s++) {
		struct env env = { .m = m, .names = names, .srcs = src, .nsrc = n, .name = names[s],
				   .pm = pm, .e = e };
		const struct mrule *hit = find_rule(m, &env, &rc);
		json_t *cat = hit ? json_object_get(hit->j, "concat") : NULL, *t;
		size_t k;
		json_array_foreach(cat, k, t) {
			char other[MAX_NAME];
			long j;
			if (!json_is_string(t) || (rc = render(&env, json_string_value(t), other, sizeof(other))))
				break;
			if ((j = find_source(&env, other)) >= 0)
				used[j] = 1;  /* a missing one is reported when the output is made */
		}
	}
	for (size_t s = 0; s < n && !rc; s++) {
		struct env env = { .m = m, .names = names, .srcs = src, .nsrc = n, .name = names[s],
				   .pm = pm, .e = e };
		if (used[s])
			continue;
		const struct mrule *hit = find_rule(m, &env, &rc);
		if (rc)
			break;
		if (!hit) {
			unmatched++;
			snprintf(msg, sizeof(msg), "no rule of mapping %s matches it", ckpt_mapping_name(m));
			if (!strict) {
				if (ckpt_view_add_skip(v, names[s], msg)) {
					rc = ckpt_err_set(e, -ENOMEM, "out of memory");
					break;
				}
			} else if (unmatched == 1) {
				ckpt_err_set(e, -EINVAL, "%s: source tensor '%s' is matched by no rule "
					     "(use -o mapping_strict=0 to leave such tensors out, or "
					     "-o mapping=none for raw names)", m->path, names[s]);
			}
			continue;
		}
		if (hit->drop) {
			snprintf(msg, sizeof(msg), "dropped by mapping %s", ckpt_mapping_name(m));
			if (ckpt_view_add_skip(v, names[s], msg)) {
				rc = ckpt_err_set(e, -ENOMEM, "out of memory");
				break;
			}
			continue;
		}
		rc = apply_rule(&env, v, hit, src[s]);
	}
	free(used);
	if (!rc && strict && unmatched)
		return e->code;
	if (rc && m->own_config)
		ckpt_err_prefix(e, "mapping parameters from the Megatron args in %s (no config.json given)",
				m->args_label);
	if (rc)
		return rc;
	/* two rules must never make the same name */
	if (v->n > 1) {
		qsort(v->t, v->n, sizeof(*v->t), cmp_vt_name);
		for (size_t i = 1; i < v->n; i++)
			if (!strcmp(v->t[i - 1].name, v->t[i].name))
				return ckpt_err_set(e, -EINVAL, "%s: two source tensors map to '%s'", m->path,
						    v->t[i].name);
	}
	return 0;
}

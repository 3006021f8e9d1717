/* expr.c - see expr.h.  A recursive-descent evaluator; precedence from low
 * to high: ?:, ??, ||, &&, comparisons, + -, * / %, unary. */
#include "config.h"
#include "expr.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

struct ex {
	const char *s, *p;
	ckpt_expr_lookup lookup;
	void *ctx;
	struct ckpt_err *e;
	int depth;
	char undef[64];   /* first undefined name met */
};

#define UNDEF 1  /* internal: a name was undefined; the value is meaningless */

static void skip_ws(struct ex *x)
{
	while (isspace((unsigned char)*x->p))
		x->p++;
}

static int accept(struct ex *x, const char *tok)
{
	skip_ws(x);
	size_t n = strlen(tok);
	if (strncmp(x->p, tok, n) != 0)
		return 0;
	/* "<" must not eat "<=", "!" must not eat "!=" ... */
	if (n == 1 && (tok[0] == '<' || tok[0] == '>' || tok[0] == '!' || tok[0] == '=') && x->p[1] == '=')
		return 0;
	if (n == 1 && (tok[0] == '&' || tok[0] == '|'))
		return 0;
	if (n == 1 && tok[0] == '?' && x->p[1] == '?')
		return 0;
	x->p += n;
	return 1;
}

static int syntax(struct ex *x, const char *what)
{
	return ckpt_err_set(x->e, -EINVAL, "expression '%s': %s at offset %td", x->s, what,
			    x->p - x->s);
}

static int cond(struct ex *x, int64_t *v);

static int primary(struct ex *x, int64_t *v)
{
	skip_ws(x);
	if (++x->depth > 64)
		return syntax(x, "nested too deeply");
	if (accept(x, "(")) {
		int rc = cond(x, v);
		if (rc < 0)
			return rc;
		if (!accept(x, ")"))
			return syntax(x, "expected ')'");
		x->depth--;
		return rc;
	}
	const char *start = x->p;
	if (isdigit((unsigned char)*x->p)) {
		int64_t n = 0;
		while (isdigit((unsigned char)*x->p)) {
			if (__builtin_mul_overflow(n, 10, &n) || __builtin_add_overflow(n, *x->p - '0', &n))
				return syntax(x, "number too large");
			x->p++;
		}
		*v = n;
		x->depth--;
		return 0;
	}
	if (*x->p == '$' || isalpha((unsigned char)*x->p) || *x->p == '_') {
		x->p++;
		while (isalnum((unsigned char)*x->p) || *x->p == '_')
			x->p++;
		size_t len = (size_t)(x->p - start);
		x->depth--;
		if (x->lookup(x->ctx, start, len, v) == 0)
			return 0;
		if (!x->undef[0])
			snprintf(x->undef, sizeof(x->undef), "%.*s", (int)(len < 60 ? len : 60), start);
		return UNDEF;
	}
	return syntax(x, *x->p ? "unexpected character" : "unexpected end");
}

static int unary(struct ex *x, int64_t *v)
{
	int rc;
	if (accept(x, "-")) {
		if ((rc = unary(x, v)) < 0)
			return rc;
		if (*v == INT64_MIN)
			return syntax(x, "overflow");
		*v = -*v;
		return rc;
	}
	if (accept(x, "!")) {
		if ((rc = unary(x, v)) < 0)
			return rc;
		*v = !*v;
		return rc;
	}
	return primary(x, v);
}

/* Binary levels share one loop: ops[] in this level, next level below. */
static int binary(struct ex *x, int64_t *v, int level);

static int level_next(struct ex *x, int64_t *v, int level)
{
	return level == 4 ? unary(x, v) : binary(x, v, level + 1);
}

static int binary(struct ex *x, int64_t *v, int level)
{
	static const char *const ops[5][7] = {
		{ "||", NULL }, { "&&", NULL }, { "==", "!=", "<=", ">=", "<", ">", NULL },
		{ "+", "-", NULL }, { "*", "/", "%", NULL },
	};
	int rc = level_next(x, v, level), rc2;
	if (rc < 0)
		return rc;
	for (;;) {
		const char *op = NULL;
		for (int i = 0; ops[level][i]; i++)
			if (accept(x, ops[level][i])) {
				op = ops[level][i];
				break;
			}
		if (!op)
			return rc;
		int64_t r;
		if ((rc2 = level_next(x, &r, level)) < 0)
			return rc2;
		rc |= rc2;
		if (rc)
			continue;
		if (!strcmp(op, "||")) *v = *v || r;
		else if (!strcmp(op, "&&")) *v = *v && r;
		else if (!strcmp(op, "==")) *v = *v == r;
		else if (!strcmp(op, "!=")) *v = *v != r;
		else if (!strcmp(op, "<=")) *v = *v <= r;
		else if (!strcmp(op, ">=")) *v = *v >= r;
		else if (!strcmp(op, "<")) *v = *v < r;
		else if (!strcmp(op, ">")) *v = *v > r;
		else if (!strcmp(op, "+")) { if (__builtin_add_overflow(*v, r, v)) return syntax(x, "overflow"); }
		else if (!strcmp(op, "-")) { if (__builtin_sub_overflow(*v, r, v)) return syntax(x, "overflow"); }
		else if (!strcmp(op, "*")) { if (__builtin_mul_overflow(*v, r, v)) return syntax(x, "overflow"); }
		else {
			if (r == 0)
				return syntax(x, "division by zero");
			if (r == -1 && *v == INT64_MIN)
				return syntax(x, "overflow");
			*v = op[0] == '/' ? *v / r : *v % r;
		}
	}
}

static int coalesce(struct ex *x, int64_t *v)
{
	int rc = binary(x, v, 0);
	if (rc < 0)
		return rc;
	while (accept(x, "??")) {
		int64_t r;
		char saved[64];
		memcpy(saved, x->undef, sizeof(saved));
		int rc2 = binary(x, &r, 0);
		if (rc2 < 0)
			return rc2;
		if (rc == UNDEF) {
			*v = r;
			rc = rc2;
			if (!rc2)
				x->undef[0] = '\0';
		} else {
			memcpy(x->undef, saved, sizeof(saved));
		}
	}
	return rc;
}

/* c ? a : b (right-associative): only the chosen branch's undefined names
 * count. */
static int cond(struct ex *x, int64_t *v)
{
	int rc = coalesce(x, v), ra, rb;
	if (rc < 0 || !accept(x, "?"))
		return rc;
	int64_t a, b;
	char saved[64];
	memcpy(saved, x->undef, sizeof(saved));
	if ((ra = cond(x, &a)) < 0)
		return ra;
	char after_a[64];
	memcpy(after_a, x->undef, sizeof(after_a));
	memcpy(x->undef, saved, sizeof(saved));
	if (!accept(x, ":"))
		return syntax(x, "expected ':'");
	if ((rb = cond(x, &b)) < 0)
		return rb;
	if (rc == UNDEF)
		return UNDEF;  /* x->undef names the condition's undefined name */
	if (*v) {
		memcpy(x->undef, after_a, sizeof(after_a));
		*v = a;
		return ra;
	}
	*v = b;
	return rb;
}

int ckpt_expr_eval(const char *s, ckpt_expr_lookup lookup, void *ctx, int64_t *out,
		   struct ckpt_err *e)
{
	struct ex x = { .s = s, .p = s, .lookup = lookup, .ctx = ctx, .e = e };
	int rc = cond(&x, out);

	if (rc < 0)
		return rc;
	skip_ws(&x);
	if (*x.p)
		return syntax(&x, "unexpected text");
	if (rc == UNDEF)
		return ckpt_err_set(e, -ENOENT, "expression '%s' needs '%s', which the model config "
				    "(config.json of -o assets) does not define", s, x.undef);
	return 0;
}

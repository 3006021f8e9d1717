/* expr.h - integer expressions in mapping rules: "hidden_size / num_attention_heads",
 * "head_dim ?? hidden_size / num_attention_heads", "L + 1", "!tie_word_embeddings".
 *
 * Operators: + - * / % (C semantics on int64), unary - and !, comparison
 * == != < <= > >=, && ||, parentheses, a ?? b (b when a names something
 * undefined) and c ? a : b (lowest precedence).  Names are looked up through a callback; "$N" is capture N of
 * the rule's regex, read as an integer. */
#ifndef CKPT_EXPR_H
#define CKPT_EXPR_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Returns 0 and *out for a known name, -ENOENT for an unknown one. */
typedef int (*ckpt_expr_lookup)(void *ctx, const char *name, size_t len, int64_t *out);

/* Evaluates s.  An undefined name (outside a ?? fallback) fails with -ENOENT
 * and a message naming it; syntax errors and division by zero with -EINVAL.
 * Pure apart from the callback. */
int ckpt_expr_eval(const char *s, ckpt_expr_lookup lookup, void *ctx, int64_t *out,
		   struct ckpt_err *e);

#endif

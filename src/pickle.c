/* pickle.c - the inert pickle reader; see pickle.h.
 *
 * A stack machine over the opcodes DCP and torch.save use (dcp-format.md
 * section 2.6).  Text opcodes of protocols 0/1 other than the container ones,
 * extension registry opcodes and out-of-band buffers are refused. */
#include "config.h"
#include "pickle.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PK_MAX_STACK   (1u << 22)
#define PK_MAX_MEMO    (1u << 24)
#define PK_BLOCK_SIZE  (64u * 1024)

struct pk_block {
	struct pk_block *next;
	size_t used, cap;
	max_align_t data[];
};

/* ---- arena ---- */

static void *pk_alloc(struct ckpt_pickle *p, size_t n)
{
	struct pk_block *b = p->blocks;

	n = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
	if (!b || b->cap - b->used < n) {
		size_t cap = n > PK_BLOCK_SIZE ? n : PK_BLOCK_SIZE;
		if (p->arena_limit && (cap > p->arena_limit || p->arena_bytes > p->arena_limit - cap))
			return NULL;  /* the caller reports it as too large */
		p->arena_bytes += cap;
		b = malloc(sizeof(*b) + cap);
		if (!b)
			return NULL;
		b->used = 0;
		b->cap = cap;
		b->next = p->blocks;
		p->blocks = b;
	}
	void *r = (char *)b->data + b->used;
	b->used += n;
	return r;
}

void ckpt_pickle_free(struct ckpt_pickle *p)
{
	struct pk_block *b = p->blocks, *n;
	for (; b; b = n) {
		n = b->next;
		free(b);
	}
	p->blocks = NULL;
	p->root = NULL;
}

/* ---- the machine ---- */

struct pk {
	struct ckpt_pickle *p;
	const uint8_t *buf;
	size_t len, pos;
	const char *label;
	struct ckpt_err *e;
	struct pv **stack;
	size_t sp, scap;
	size_t *marks;
	size_t nmarks, mcap;
	struct pv **memo;
	size_t nmemo;      /* highest index in use + 1 */
	size_t nset;       /* distinct indices stored: CPython's len(memo), MEMOIZE's index */
	size_t memocap;
	uint64_t op_off;   /* offset of the current opcode */
};

#define FAIL(k, ...) ckpt_err_set((k)->e, -EINVAL, __VA_ARGS__)

static int truncated(struct pk *k)
{
	return FAIL(k, "%s: byte %llu: pickle truncated (opcode at %llu needs more bytes)",
		    k->label, (unsigned long long)k->len, (unsigned long long)k->op_off);
}

static int need(struct pk *k, size_t n)
{
	return k->len - k->pos < n ? truncated(k) : 0;
}

static uint64_t rd_le(const uint8_t *b, int n)
{
	uint64_t v = 0;
	for (int i = n - 1; i >= 0; i--)
		v = (v << 8) | b[i];
	return v;
}

static int arena_full(struct pk *k)
{
	return ckpt_err_set(k->e, -E2BIG, "%s: byte %llu: the pickle builds more than %zu bytes of "
			    "values from %zu bytes of input (a memory bomb?)", k->label,
			    (unsigned long long)k->op_off, k->p->arena_limit, k->len);
}

static struct pv *mk(struct pk *k, enum pv_kind kind)
{
	struct pv *v = pk_alloc(k->p, sizeof(*v));
	if (!v) {
		arena_full(k);
		return NULL;
	}
	memset(v, 0, sizeof(*v));
	v->kind = kind;
	v->off = k->op_off;
	return v;
}

static int push(struct pk *k, struct pv *v)
{
	if (!v)
		return -ENOMEM;
	if (k->sp == k->scap) {
		if (k->scap >= PK_MAX_STACK)
			return FAIL(k, "%s: byte %llu: pickle stack too deep", k->label,
				    (unsigned long long)k->op_off);
		size_t nc = k->scap ? k->scap * 2 : 256;
		struct pv **ns = realloc(k->stack, nc * sizeof(*ns));
		if (!ns)
			return ckpt_err_set(k->e, -ENOMEM, "%s: out of memory", k->label);
		k->stack = ns;
		k->scap = nc;
	}
	k->stack[k->sp++] = v;
	return 0;
}

static struct pv *pop(struct pk *k)
{
	if (k->sp == 0 || (k->nmarks && k->sp == k->marks[k->nmarks - 1])) {
		FAIL(k, "%s: byte %llu: pickle stack underflow", k->label,
		     (unsigned long long)k->op_off);
		return NULL;
	}
	return k->stack[--k->sp];
}

static struct pv *top(struct pk *k)
{
	if (k->sp == 0 || (k->nmarks && k->sp == k->marks[k->nmarks - 1])) {
		FAIL(k, "%s: byte %llu: pickle stack empty", k->label,
		     (unsigned long long)k->op_off);
		return NULL;
	}
	return k->stack[k->sp - 1];
}

/* Pops everything above the last MARK; start and n describe the popped run. */
static int pop_mark(struct pk *k, size_t *start, size_t *n)
{
	if (k->nmarks == 0)
		return FAIL(k, "%s: byte %llu: no MARK on the pickle stack", k->label,
			    (unsigned long long)k->op_off);
	size_t m = k->marks[--k->nmarks];
	*start = m;
	*n = k->sp - m;
	k->sp = m;
	return 0;
}

static int seq_add(struct pk *k, struct pv *seq, struct pv *item)
{
	if (seq->u.seq.n == seq->u.seq.cap) {
		size_t nc = seq->u.seq.cap ? seq->u.seq.cap * 2 : 4;
		struct pv **nv = pk_alloc(k->p, nc * sizeof(*nv));
		if (!nv)
			return arena_full(k);
		if (seq->u.seq.n)
			memcpy(nv, seq->u.seq.v, seq->u.seq.n * sizeof(*nv));
		seq->u.seq.v = nv;
		seq->u.seq.cap = nc;
	}
	seq->u.seq.v[seq->u.seq.n++] = item;
	return 0;
}

static struct pv *mk_seq(struct pk *k, enum pv_kind kind, struct pv **items, size_t n)
{
	struct pv *v = mk(k, kind);
	if (!v)
		return NULL;
	if (n) {
		v->u.seq.v = pk_alloc(k->p, n * sizeof(*items));
		if (!v->u.seq.v) {
			arena_full(k);
			return NULL;
		}
		memcpy(v->u.seq.v, items, n * sizeof(*items));
	}
	v->u.seq.n = v->u.seq.cap = n;
	return v;
}

static struct pv *mk_str(struct pk *k, enum pv_kind kind, const uint8_t *s, size_t n)
{
	struct pv *v = mk(k, kind);
	if (!v)
		return NULL;
	v->u.str.s = pk_alloc(k->p, n + 1);
	if (!v->u.str.s) {
		arena_full(k);
		return NULL;
	}
	memcpy(v->u.str.s, s, n);
	v->u.str.s[n] = '\0';
	v->u.str.len = n;
	return v;
}

static int op_global(struct pk *k, const char *module, size_t mlen, const char *name, size_t nlen)
{
	struct pv *g = mk(k, PV_GLOBAL);
	char *m, *n;

	if (!g)
		return -ENOMEM;
	m = pk_alloc(k->p, mlen + 1);
	n = pk_alloc(k->p, nlen + 1);
	if (!m || !n)
		return arena_full(k);
	memcpy(m, module, mlen);
	m[mlen] = '\0';
	memcpy(n, name, nlen);
	n[nlen] = '\0';
	if (memchr(m, '\0', mlen) || memchr(n, '\0', nlen) || ckpt__pickle_resolve(m, n, g) != 0)
		return ckpt_err_set(k->e, -EPERM,
				    "%s: byte %llu: class %s.%s is outside the whitelist of classes "
				    "a checkpoint may reference; refusing to read it",
				    k->label, (unsigned long long)k->op_off, m, n);
	return push(k, g);
}

static int memo_put(struct pk *k, size_t idx, struct pv *v)
{
	if (idx >= PK_MAX_MEMO)
		return FAIL(k, "%s: byte %llu: memo index %zu too large", k->label,
			    (unsigned long long)k->op_off, idx);
	if (idx >= k->memocap) {
		size_t nc = k->memocap ? k->memocap : 64;
		while (nc <= idx)
			nc *= 2;
		struct pv **nm = realloc(k->memo, nc * sizeof(*nm));
		if (!nm)
			return ckpt_err_set(k->e, -ENOMEM, "%s: out of memory", k->label);
		memset(nm + k->memocap, 0, (nc - k->memocap) * sizeof(*nm));
		k->memo = nm;
		k->memocap = nc;
	}
	if (!k->memo[idx])
		k->nset++;
	k->memo[idx] = v;
	if (idx >= k->nmemo)
		k->nmemo = idx + 1;
	return 0;
}

static int memo_get(struct pk *k, size_t idx)
{
	if (idx >= k->nmemo || !k->memo[idx])
		return FAIL(k, "%s: byte %llu: memo index %zu was never stored", k->label,
			    (unsigned long long)k->op_off, idx);
	return push(k, k->memo[idx]);
}

/* REDUCE and NEWOBJ: cls must be a whitelisted global; the result is inert. */
static int op_call(struct pk *k, struct pv *cls, struct pv *args)
{
	if (!cls || !args)
		return -EINVAL;
	if (cls->kind != PV_GLOBAL)
		return FAIL(k, "%s: byte %llu: call of a %s, expected a whitelisted class",
			    k->label, (unsigned long long)k->op_off, pv_kind_name(cls->kind));
	if (args->kind != PV_TUPLE)
		return FAIL(k, "%s: byte %llu: call arguments are a %s, expected a tuple",
			    k->label, (unsigned long long)k->op_off, pv_kind_name(args->kind));
	if (cls->u.g.id == PC_ORDERED_DICT) {
		if (args->u.seq.n != 0)
			return FAIL(k, "%s: byte %llu: OrderedDict with arguments is not supported",
				    k->label, (unsigned long long)k->op_off);
		return push(k, mk(k, PV_DICT));
	}
	if (cls->u.g.id == PC_GETATTR) {
		/* Only enum members pickled by name: getattr(EnumClass, "NAME"). */
		struct pv *a0 = args->u.seq.n == 2 ? args->u.seq.v[0] : NULL;
		if (!a0 || a0->kind != PV_GLOBAL ||
		    (a0->u.g.id != PC_MEM_FORMAT_ENUM && a0->u.g.id != PC_ENUM_OTHER) ||
		    args->u.seq.v[1]->kind != PV_STR)
			return FAIL(k, "%s: byte %llu: builtins.getattr is only allowed on an enum class",
				    k->label, (unsigned long long)k->op_off);
	}
	struct pv *o = mk(k, PV_OBJ);
	if (!o)
		return -ENOMEM;
	o->u.obj.cls = cls;
	o->u.obj.args = args;
	return push(k, o);
}

static int op_build(struct pk *k)
{
	int rc;
	struct pv *state = pop(k), *obj = state ? top(k) : NULL;
	if (!obj)
		return -EINVAL;
	if (obj->kind == PV_OBJ && !obj->u.obj.state) {
		obj->u.obj.state = state;
		return 0;
	}
	if (obj->kind == PV_DICT && state->kind == PV_DICT) {
		if (obj == state)
			return 0;  /* d.update(d) changes nothing */
		for (size_t i = 0; i < state->u.seq.n; i++)
			if ((rc = seq_add(k, obj, state->u.seq.v[i])))
				return rc;
		return 0;
	}
	return FAIL(k, "%s: byte %llu: BUILD on a %s, expected an object", k->label,
		    (unsigned long long)k->op_off, pv_kind_name(obj->kind));
}

static int op_setitems(struct pk *k, size_t start, size_t n)
{
	int rc;
	struct pv *d = top(k);
	if (!d)
		return -EINVAL;
	if (d->kind != PV_DICT)
		return FAIL(k, "%s: byte %llu: SETITEM(S) on a %s, expected a dict", k->label,
			    (unsigned long long)k->op_off, pv_kind_name(d->kind));
	if (n % 2)
		return FAIL(k, "%s: byte %llu: SETITEMS with an odd number of items", k->label,
			    (unsigned long long)k->op_off);
	for (size_t i = 0; i < n; i++)
		if ((rc = seq_add(k, d, k->stack[start + i])))
			return rc;
	return 0;
}

static int op_appends(struct pk *k, size_t start, size_t n, enum pv_kind want)
{
	int rc;
	struct pv *l = top(k);
	if (!l)
		return -EINVAL;
	if (l->kind != want)
		return FAIL(k, "%s: byte %llu: APPEND/ADDITEMS on a %s, expected a %s", k->label,
			    (unsigned long long)k->op_off, pv_kind_name(l->kind), pv_kind_name(want));
	for (size_t i = 0; i < n; i++)
		if ((rc = seq_add(k, l, k->stack[start + i])))
			return rc;
	return 0;
}

static int op_long(struct pk *k, size_t n)
{
	struct pv *v;
	if (need(k, n))
		return -EINVAL;
	if (n > 8)
		return FAIL(k, "%s: byte %llu: integer of %zu bytes does not fit 64 bits",
			    k->label, (unsigned long long)k->op_off, n);
	uint64_t u = n ? rd_le(k->buf + k->pos, (int)n) : 0;
	if (n && n < 8 && (k->buf[k->pos + n - 1] & 0x80))
		u |= ~(uint64_t)0 << (8 * n);  /* sign-extend */
	k->pos += n;
	v = mk(k, PV_INT);
	if (!v)
		return -ENOMEM;
	v->u.i = (int64_t)u;
	return push(k, v);
}

static int op_text_line(struct pk *k, const char **s, size_t *n)
{
	const uint8_t *nl = memchr(k->buf + k->pos, '\n', k->len - k->pos);
	if (!nl)
		return truncated(k);
	*s = (const char *)k->buf + k->pos;
	*n = (size_t)(nl - (k->buf + k->pos));
	k->pos += *n + 1;
	return 0;
}

static int step(struct pk *k, int *done)
{
	uint8_t op;
	size_t start = 0, n = 0;
	struct pv *v, *a, *b;
	int rc;

	k->op_off = k->pos;
	if (need(k, 1))
		return -EINVAL;
	op = k->buf[k->pos++];
	switch (op) {
	case 0x80: /* PROTO */
		if (need(k, 1))
			return -EINVAL;
		if (k->buf[k->pos] > 5)
			return FAIL(k, "%s: byte %llu: pickle protocol %u is newer than 5",
				    k->label, (unsigned long long)k->op_off, k->buf[k->pos]);
		k->pos++;
		return 0;
	case 0x95: /* FRAME */
		if (need(k, 8))
			return -EINVAL;
		k->pos += 8;
		return 0;
	case '.': /* STOP */
		*done = 1;
		return 0;
	case '(': /* MARK */
		if (k->nmarks == k->mcap) {
			size_t nc = k->mcap ? k->mcap * 2 : 32;
			if (nc > PK_MAX_STACK)
				return FAIL(k, "%s: byte %llu: too many nested MARKs", k->label,
					    (unsigned long long)k->op_off);
			size_t *nm = realloc(k->marks, nc * sizeof(*nm));
			if (!nm)
				return ckpt_err_set(k->e, -ENOMEM, "%s: out of memory", k->label);
			k->marks = nm;
			k->mcap = nc;
		}
		k->marks[k->nmarks++] = k->sp;
		return 0;
	case '0': /* POP */
		return pop(k) ? 0 : -EINVAL;
	case '1': /* POP_MARK */
		return pop_mark(k, &start, &n);
	case '2': /* DUP */
		v = top(k);
		return v ? push(k, v) : -EINVAL;
	case 'N':
		return push(k, mk(k, PV_NONE));
	case 0x88: case 0x89: /* NEWTRUE, NEWFALSE */
		v = mk(k, PV_BOOL);
		if (!v)
			return -ENOMEM;
		v->u.b = op == 0x88;
		return push(k, v);
	case 'J': case 'K': case 'M': { /* BININT, BININT1, BININT2 */
		int w = op == 'J' ? 4 : op == 'K' ? 1 : 2;
		if (need(k, (size_t)w))
			return -EINVAL;
		v = mk(k, PV_INT);
		if (!v)
			return -ENOMEM;
		uint64_t u = rd_le(k->buf + k->pos, w);
		v->u.i = op == 'J' ? (int64_t)(int32_t)(uint32_t)u : (int64_t)u;
		k->pos += (size_t)w;
		return push(k, v);
	}
	case 0x8a: /* LONG1 */
		if (need(k, 1))
			return -EINVAL;
		n = k->buf[k->pos++];
		return op_long(k, n);
	case 0x8b: /* LONG4 */
		if (need(k, 4))
			return -EINVAL;
		n = (size_t)rd_le(k->buf + k->pos, 4);
		k->pos += 4;
		return op_long(k, n);
	case 'G': { /* BINFLOAT, big-endian */
		uint64_t u = 0;
		double d;
		if (need(k, 8))
			return -EINVAL;
		for (int i = 0; i < 8; i++)
			u = (u << 8) | k->buf[k->pos + i];
		k->pos += 8;
		memcpy(&d, &u, sizeof(d));
		v = mk(k, PV_FLOAT);
		if (!v)
			return -ENOMEM;
		v->u.f = d;
		return push(k, v);
	}
	case 0x8c: case 'X': case 0x8d:   /* SHORT_BINUNICODE, BINUNICODE, BINUNICODE8 */
	case 'C': case 'B': case 0x8e:    /* SHORT_BINBYTES, BINBYTES, BINBYTES8 */
	case 'U': case 'T': {             /* SHORT_BINSTRING, BINSTRING (protocol 1) */
		int w = (op == 0x8c || op == 'C' || op == 'U') ? 1 :
			(op == 0x8d || op == 0x8e) ? 8 : 4;
		if (need(k, (size_t)w))
			return -EINVAL;
		uint64_t len = rd_le(k->buf + k->pos, w);
		k->pos += (size_t)w;
		if (len > k->len - k->pos)
			return truncated(k);
		v = mk_str(k, (op == 'C' || op == 'B' || op == 0x8e) ? PV_BYTES : PV_STR,
			   k->buf + k->pos, (size_t)len);
		k->pos += (size_t)len;
		return push(k, v);
	}
	case ')':
		return push(k, mk_seq(k, PV_TUPLE, NULL, 0));
	case 0x85: case 0x86: case 0x87: { /* TUPLE1..3 */
		size_t cnt = (size_t)(op - 0x84);
		struct pv *items[3];
		for (size_t i = cnt; i-- > 0;)
			if (!(items[i] = pop(k)))
				return -EINVAL;
		return push(k, mk_seq(k, PV_TUPLE, items, cnt));
	}
	case 't': case 'l': /* TUPLE, LIST (mark based) */
		if ((rc = pop_mark(k, &start, &n)))
			return rc;
		return push(k, mk_seq(k, op == 't' ? PV_TUPLE : PV_LIST, n ? k->stack + start : NULL, n));
	case 'd': /* DICT (mark based) */
		if ((rc = pop_mark(k, &start, &n)))
			return rc;
		if (n % 2)
			return FAIL(k, "%s: byte %llu: DICT with an odd number of items", k->label,
				    (unsigned long long)k->op_off);
		return push(k, mk_seq(k, PV_DICT, n ? k->stack + start : NULL, n));
	case 0x91: /* FROZENSET */
		if ((rc = pop_mark(k, &start, &n)))
			return rc;
		return push(k, mk_seq(k, PV_SET, n ? k->stack + start : NULL, n));
	case ']':
		return push(k, mk(k, PV_LIST));
	case '}':
		return push(k, mk(k, PV_DICT));
	case 0x8f:
		return push(k, mk(k, PV_SET));
	case 'a': /* APPEND */
		if (!(v = pop(k)) || !(a = top(k)))
			return -EINVAL;
		if (a->kind != PV_LIST)
			return FAIL(k, "%s: byte %llu: APPEND on a %s, expected a list", k->label,
				    (unsigned long long)k->op_off, pv_kind_name(a->kind));
		return seq_add(k, a, v);
	case 'e': case 0x90: /* APPENDS, ADDITEMS */
		if ((rc = pop_mark(k, &start, &n)))
			return rc;
		return op_appends(k, start, n, op == 'e' ? PV_LIST : PV_SET);
	case 's': /* SETITEM */
		if (k->sp < 3 || (k->nmarks && k->sp - k->marks[k->nmarks - 1] < 3))
			return FAIL(k, "%s: byte %llu: SETITEM needs a dict, a key and a value",
				    k->label, (unsigned long long)k->op_off);
		k->sp -= 2;
		return op_setitems(k, k->sp, 2);
	case 'u': /* SETITEMS */
		if ((rc = pop_mark(k, &start, &n)))
			return rc;
		return op_setitems(k, start, n);
	case 'c': { /* GLOBAL: "module\nname\n" */
		const char *m = NULL, *nm = NULL;
		size_t ml = 0, nl = 0;
		if ((rc = op_text_line(k, &m, &ml)) || (rc = op_text_line(k, &nm, &nl)))
			return rc;
		return op_global(k, m, ml, nm, nl);
	}
	case 0x93: /* STACK_GLOBAL */
		if (!(b = pop(k)) || !(a = pop(k)))
			return -EINVAL;
		if (a->kind != PV_STR || b->kind != PV_STR)
			return FAIL(k, "%s: byte %llu: STACK_GLOBAL needs two strings", k->label,
				    (unsigned long long)k->op_off);
		return op_global(k, a->u.str.s, a->u.str.len, b->u.str.s, b->u.str.len);
	case 'R': /* REDUCE */
		if (!(a = pop(k)) || !(v = pop(k)))
			return -EINVAL;
		return op_call(k, v, a);
	case 0x81: /* NEWOBJ */
		if (!(a = pop(k)) || !(v = pop(k)))
			return -EINVAL;
		return op_call(k, v, a);
	case 0x92: /* NEWOBJ_EX: cls args kwargs */
		if (!(b = pop(k)) || !(a = pop(k)) || !(v = pop(k)))
			return -EINVAL;
		if (b->kind != PV_DICT || b->u.seq.n)
			return FAIL(k, "%s: byte %llu: NEWOBJ_EX with keyword arguments is not supported",
				    k->label, (unsigned long long)k->op_off);
		return op_call(k, v, a);
	case 'b':
		return op_build(k);
	case 'Q': /* BINPERSID */
		if (!(a = pop(k)))
			return -EINVAL;
		if (!(v = mk(k, PV_PERSID)))
			return -ENOMEM;
		v->u.pid = a;
		return push(k, v);
	case 0x94: /* MEMOIZE */
		if (!(v = top(k)))
			return -EINVAL;
		return memo_put(k, k->nset, v);
	case 'q': case 'r': { /* BINPUT, LONG_BINPUT */
		int w = op == 'q' ? 1 : 4;
		if (need(k, (size_t)w) || !(v = top(k)))
			return -EINVAL;
		n = (size_t)rd_le(k->buf + k->pos, w);
		k->pos += (size_t)w;
		return memo_put(k, n, v);
	}
	case 'h': case 'j': { /* BINGET, LONG_BINGET */
		int w = op == 'h' ? 1 : 4;
		if (need(k, (size_t)w))
			return -EINVAL;
		n = (size_t)rd_le(k->buf + k->pos, w);
		k->pos += (size_t)w;
		return memo_get(k, n);
	}
	case 0x82: case 0x83: case 0x84:
		return FAIL(k, "%s: byte %llu: pickle extension registry opcode (EXT) is not allowed",
			    k->label, (unsigned long long)k->op_off);
	case 0x96: case 0x97: case 0x98:
		return FAIL(k, "%s: byte %llu: pickle out-of-band buffer opcode is not allowed",
			    k->label, (unsigned long long)k->op_off);
	default:
		return FAIL(k, "%s: byte %llu: unsupported pickle opcode 0x%02x", k->label,
			    (unsigned long long)k->op_off, op);
	}
}

int ckpt_pickle_parse(struct ckpt_pickle *p, const uint8_t *buf, size_t len,
		      const char *label, struct ckpt_err *e)
{
	struct pk k = { .p = p, .buf = buf, .len = len, .label = label, .e = e };
	int done = 0, rc = 0;

	p->blocks = NULL;
	p->root = NULL;
	p->arena_bytes = 0;
	p->arena_limit = len > (SIZE_MAX - (64u << 20)) / 64 ? SIZE_MAX : len * 64 + (64u << 20);
	if (len < 2 || buf[0] != 0x80)
		rc = ckpt_err_set(e, -EINVAL, "%s: byte 0: not a pickle (expected 0x80 PROTO, found %s)",
				  label, len ? "other bytes" : "an empty file");
	while (!rc && !done)
		rc = step(&k, &done);
	if (!rc && (k.sp != 1 || k.nmarks))
		rc = ckpt_err_set(e, -EINVAL, "%s: byte %llu: pickle ended with %zu values on the stack",
				  label, (unsigned long long)k.op_off, k.sp);
	if (!rc)
		p->root = k.stack[0];
	free(k.stack);
	free(k.marks);
	free(k.memo);
	if (rc)
		ckpt_pickle_free(p);
	return rc;
}


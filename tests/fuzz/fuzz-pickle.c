/* fuzz-pickle.c - libFuzzer harness: the inert pickle reader on arbitrary
 * bytes, then a walk over the resulting tree with every pv_* accessor.
 * The tree may contain cycles (a memoised list appended to itself), so the
 * walk is bounded by a node budget instead of recursion. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "pickle.h"

#define WALK_BUDGET 200000

static const char *const keys[] = {
	"state_dict_metadata", "storage_data", "planner_data", "properties", "size", "chunks",
	"offsets", "sizes", "fqn", "offset", "relative_path", "length", "transform_descriptors",
	"dtype", "",
};

static void visit(const struct pv *v, volatile uint64_t *sink)
{
	int64_t i64, dims[16];
	const char *s;
	int nd;

	*sink += (uint64_t)strlen(pv_kind_name(v->kind)) + v->off;
	if (pv_get_int(v, &i64) == 0)
		*sink += (uint64_t)i64;
	if (pv_get_str(v, &s) == 0)
		*sink += strlen(s);
	if (pv_get_shape(v, dims, 16, &nd) == 0) {
		for (int d = 0; d < nd; d++)
			*sink += (uint64_t)dims[d];
	}
	for (int id = PC_NONE; id <= PC_ENUM_OTHER; id++)
		*sink += (uint64_t)pv_is_obj(v, (enum pc_id)id);
	if (pv_obj_state(v))
		*sink += 1;
	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
		if (pv_dict_get(v, keys[k]))
			*sink += k;
	if (v->kind == PV_STR || v->kind == PV_BYTES)
		for (size_t k = 0; k < v->u.str.len; k++)  /* the whole buffer is addressable */
			*sink += (uint8_t)v->u.str.s[k];
	if (v->kind == PV_GLOBAL)
		*sink += strlen(v->u.g.module) + strlen(v->u.g.name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ckpt_pickle p;
	struct ckpt_err e = { 0 };
	volatile uint64_t sink = 0;

	if (ckpt_pickle_parse(&p, data, size, "fuzz", &e)) {
		if (!e.msg[0] || e.code >= 0)
			abort();  /* every failure carries a message and a negative errno */
		return 0;
	}
	if (!p.root)
		abort();
	/* explicit stack walk; the budget also bounds cyclic trees */
	const struct pv **stack = malloc(WALK_BUDGET * sizeof(*stack));
	size_t sp = 0, visited = 0;
	if (!stack)
		abort();
	stack[sp++] = p.root;
	while (sp && visited < WALK_BUDGET) {
		const struct pv *v = stack[--sp];
		visited++;
		if (v->kind == PV_MARK)
			abort();  /* never visible in a finished tree (pickle.h) */
		visit(v, &sink);
		const struct pv *kids[3] = { NULL, NULL, NULL };
		switch (v->kind) {
		case PV_TUPLE: case PV_LIST: case PV_DICT: case PV_SET:
			if (v->kind == PV_DICT && v->u.seq.n % 2)
				abort();  /* dicts hold key, value pairs */
			for (size_t i = 0; i < v->u.seq.n && sp < WALK_BUDGET; i++)
				stack[sp++] = v->u.seq.v[i];
			break;
		case PV_OBJ:
			kids[0] = v->u.obj.cls;
			kids[1] = v->u.obj.args;
			kids[2] = v->u.obj.state;
			if (!kids[0] || kids[0]->kind != PV_GLOBAL)
				abort();  /* objects are only built from whitelisted globals */
			break;
		case PV_PERSID:
			kids[0] = v->u.pid;
			break;
		default:
			break;
		}
		for (int i = 0; i < 3; i++)
			if (kids[i] && sp < WALK_BUDGET)
				stack[sp++] = kids[i];
	}
	free(stack);
	ckpt_pickle_free(&p);
	(void)sink;
	return 0;
}

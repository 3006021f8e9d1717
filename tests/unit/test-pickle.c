/* test-pickle.c - unit tests for the inert pickle reader (src/pickle.c). */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "../../src/pickle.h"
#include "pickle_vectors.h"
#include "tap.h"

static const unsigned char *vec(const char *name, size_t *len)
{
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++)
		if (strcmp(vectors[i].name, name) == 0) {
			*len = vectors[i].len;
			return vectors[i].data;
		}
	return NULL;
}

static int parse(const void *buf, size_t len, struct ckpt_pickle *p, struct ckpt_err *e)
{
	ckpt_err_clear(e);
	return ckpt_pickle_parse(p, buf, len, "test", e);
}

static int is_int(const struct pv *v, int64_t want)
{
	return v && v->kind == PV_INT && v->u.i == want;
}

static void check_scalars(int proto)
{
	char name[32];
	size_t len = 0;
	struct ckpt_pickle p;
	struct ckpt_err e;
	static const int64_t ints[] = { 0, 255, 256, 65535, 65536, -1, -2147483648LL, 2147483648LL,
					3000000000LL, -3000000000LL, 4611686018427387904LL };

	snprintf(name, sizeof(name), "scalars_p%d", proto);
	const unsigned char *b = vec(name, &len);
	if (!ok(parse(b, len, &p, &e) == 0, "protocol %d scalars parse (%s)", proto, e.msg))
		return;
	const struct pv *r = p.root;
	size_t want_n = proto == 2 ? 31 : proto == 3 ? 34 : 36;
	ok(r->kind == PV_LIST && r->u.seq.n == want_n, "p%d: a list of %zu values", proto, want_n);
	struct pv **v = r->u.seq.v;
	int ints_ok = 1;
	for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++)
		ints_ok &= is_int(v[i], ints[i]);
	ok(ints_ok, "p%d: BININT1/BININT2/BININT/LONG1 values incl. negative and > 2^32", proto);
	ok(v[11]->kind == PV_FLOAT && v[11]->u.f == 1.5 && v[12]->u.f == -0.25, "p%d: BINFLOAT", proto);
	ok(v[13]->kind == PV_NONE && v[14]->kind == PV_BOOL && v[14]->u.b == 1 &&
	   v[15]->kind == PV_BOOL && v[15]->u.b == 0, "p%d: None, True, False", proto);
	ok(v[16]->kind == PV_STR && v[16]->u.str.len == 0 && v[17]->u.str.len == 2 &&
	   strcmp(v[17]->u.str.s, "\xc3\xa9") == 0 && v[18]->u.str.len == 300,
	   "p%d: short, UTF-8 and long strings", proto);
	ok(v[19]->kind == PV_TUPLE && v[19]->u.seq.n == 0 && v[20]->u.seq.n == 1 &&
	   v[21]->u.seq.n == 2 && v[22]->u.seq.n == 3 && v[23]->u.seq.n == 4 &&
	   is_int(v[23]->u.seq.v[3], 4), "p%d: tuples of 0-4 items", proto);
	ok(v[24]->kind == PV_LIST && v[24]->u.seq.n == 0 && v[25]->u.seq.n == 1 &&
	   v[26]->u.seq.n == 2 && is_int(v[26]->u.seq.v[1], 2), "p%d: lists (APPEND, APPENDS)", proto);
	int64_t a = 0, bb = 0;
	ok(v[27]->kind == PV_DICT && v[27]->u.seq.n == 0 && pv_get_int(pv_dict_get(v[28], "a"), &a) == 0 &&
	   a == 1 && pv_get_int(pv_dict_get(v[29], "b"), &bb) == 0 && bb == 2 &&
	   pv_dict_get(v[29], "c") == NULL, "p%d: dicts (SETITEM, SETITEMS)", proto);
	ok(v[30]->u.seq.v[0] == v[30]->u.seq.v[1], "p%d: memo back-reference shares the value", proto);
	if (proto >= 3)
		ok(v[31]->kind == PV_BYTES && v[31]->u.str.len == 0 && v[32]->u.str.len == 2 &&
		   (unsigned char)v[32]->u.str.s[1] == 0xff && v[33]->u.str.len == 300,
		   "p%d: bytes", proto);
	if (proto >= 4)
		ok(v[34]->kind == PV_SET && v[34]->u.seq.n == 2 && v[35]->kind == PV_SET &&
		   v[35]->u.seq.n == 1, "p%d: set and frozenset", proto);
	ckpt_pickle_free(&p);
}

static void check_memo(int proto)
{
	char name[32];
	size_t len = 0;
	struct ckpt_pickle p;
	struct ckpt_err e;

	snprintf(name, sizeof(name), "memo_p%d", proto);
	const unsigned char *b = vec(name, &len);
	if (!ok(parse(b, len, &p, &e) == 0, "p%d memo vector parses (%s)", proto, e.msg))
		return;
	struct pv **v = p.root->u.seq.v;
	int seq = v[0]->u.seq.n == 300;
	for (size_t i = 0; seq && i < 300; i++)
		seq &= is_int(v[0]->u.seq.v[i], (int64_t)i);
	ok(seq && v[0] == v[1] && v[2]->u.seq.n == 3 && v[2]->u.seq.v[0] == v[2]->u.seq.v[2],
	   "p%d: more than 256 memo entries (LONG_BINPUT/LONG_BINGET or MEMOIZE)", proto);
	ckpt_pickle_free(&p);
}

static void check_metadata(int proto)
{
	char name[32];
	size_t len = 0;
	struct ckpt_pickle p;
	struct ckpt_err e;
	int64_t dims[4];
	int nd = 0;

	snprintf(name, sizeof(name), "metadata_p%d", proto);
	const unsigned char *b = vec(name, &len);
	if (!ok(parse(b, len, &p, &e) == 0, "p%d metadata-like object parses (%s)", proto, e.msg))
		return;
	const struct pv *sdm = pv_dict_get(pv_obj_state(p.root), "state_dict_metadata");
	const struct pv *ch = pv_dict_get(sdm, "w");
	ok(pv_is_obj(p.root, PC_METADATA) && pv_is_obj(ch, PC_CHUNK_MD) &&
	   pv_get_shape(pv_dict_get(pv_obj_state(ch), "sizes"), dims, 4, &nd) == 0 && nd == 2 &&
	   dims[0] == 2 && dims[1] == 3, "p%d: NEWOBJ + BUILD objects and torch.Size", proto);
	ckpt_pickle_free(&p);
}

static void check_malformed(void)
{
	struct ckpt_pickle p;
	struct ckpt_err e;
	size_t len = 0;
	const unsigned char *b;
#define B(s) s, sizeof(s) - 1
	static const struct { const char *what; const char *bytes; size_t len; int code; const char *msg; } bad[] = {
		{ "empty input", B(""), -EINVAL, "not a pickle" },
		{ "no PROTO", B("N."), -EINVAL, "not a pickle" },
		{ "protocol 6", B("\x80\x06N."), -EINVAL, "protocol 6" },
		{ "EXT1", B("\x80\x02\x82\x01."), -EINVAL, "extension registry" },
		{ "out-of-band buffer", B("\x80\x05\x97."), -EINVAL, "out-of-band" },
		{ "protocol 0 INT", B("\x80\x02I1\n."), -EINVAL, "unsupported pickle opcode 0x49" },
		{ "stack underflow", B("\x80\x02R."), -EINVAL, "underflow" },
		{ "two values left", B("\x80\x02NN."), -EINVAL, "2 values on the stack" },
		{ "unset memo", B("\x80\x02h\x05."), -EINVAL, "never stored" },
		{ "LONG1 of 9 bytes", B("\x80\x02\x8a\x09" "123456789."), -EINVAL, "does not fit" },
		{ "missing STOP", B("\x80\x02N"), -EINVAL, "truncated" },
		{ "call of a non-class", B("\x80\x02K\x01)R."), -EINVAL, "expected a whitelisted class" },
		{ "getattr on a non-enum", "\x80\x02" "cbuiltins\ngetattr\n" "ctorch\nSize\nX\x01\x00\x00\x00x\x86R.",
		  44, -EINVAL, "only allowed on an enum" },
		{ "class outside whitelist (text GLOBAL)", B("\x80\x02" "cposix\nsystem\n."), -EPERM,
		  "posix.system is outside the whitelist" },
		{ "NEWOBJ_EX with kwargs", B("\x80\x04" "ctorch\nSize\n)}K\x01K\x02s\x92."), -EINVAL,
		  "keyword arguments" },
		{ "SETITEMS on a list", B("\x80\x02](K\x01K\x02u."), -EINVAL, "expected a dict" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = parse(bad[i].bytes, bad[i].len, &p, &e);
		ok(rc == bad[i].code && strstr(e.msg, bad[i].msg) != NULL, "rejects %s (%s)",
		   bad[i].what, e.msg);
	}
	/* two dicts updated from each other 40 times: 2^40 items from 300 bytes */
	unsigned char bomb[600];
	size_t bl = 0;
	memcpy(bomb, "\x80\x02}K\x01K\x02sq\x00" "0}K\x03K\x04sq\x01" "0", 20);
	bl = 20;
	for (int r = 0; r < 40; r++) {
		memcpy(bomb + bl, "h\x01h\x00" "b0h\x00h\x01" "b0", 12);
		bl += 12;
	}
	memcpy(bomb + bl, "N.", 2);
	bl += 2;
	ok(parse(bomb, bl, &p, &e) == -E2BIG && strstr(e.msg, "memory bomb"),
	   "values growing past 64x the input are refused (%s)", e.msg);
	static const char self_build[] = "\x80\x02}K\x01K\x02s2b.";
	ok(parse(self_build, sizeof(self_build) - 1, &p, &e) == 0 && p.root->u.seq.n == 2,
	   "BUILD of a dict with itself is a no-op (%s)", e.msg);
	ckpt_pickle_free(&p);
	b = vec("evil_p2", &len);
	ok(parse(b, len, &p, &e) == -EPERM && strstr(e.msg, "os.system"),
	   "p2 object of class os.system is refused by name (%s)", e.msg);
	b = vec("evil_p4", &len);
	ok(parse(b, len, &p, &e) == -EPERM && strstr(e.msg, "os.system"),
	   "p4 STACK_GLOBAL os.system is refused by name (%s)", e.msg);
}

static void check_aliases(void)
{
	struct ckpt_pickle p;
	struct ckpt_err e;
	static const char md113[] = "\x80\x02" "ctorch.distributed._shard.checkpoint.metadata\nMetadata\n"
				    ")\x81}b.";
	ok(parse(md113, sizeof(md113) - 1, &p, &e) == 0 && pv_is_obj(p.root, PC_METADATA),
	   "torch 1.13 _shard.checkpoint module folds to torch.distributed.checkpoint (%s)", e.msg);
	ckpt_pickle_free(&p);
	static const char byname[] = "\x80\x02" "cbuiltins\ngetattr\n"
		"ctorch.distributed._shard.sharded_tensor.metadata\nMEM_FORMAT_ENCODING\n"
		"X\x17\x00\x00\x00TORCH_CONTIGUOUS_FORMAT\x86R.";
	ok(parse(byname, sizeof(byname) - 1, &p, &e) == 0 && pv_is_obj(p.root, PC_GETATTR),
	   "enum pickled by name through builtins.getattr is accepted (%s)", e.msg);
	ckpt_pickle_free(&p);
	static const char od[] = "\x80\x02" "ccollections\nOrderedDict\n)R.";
	ok(parse(od, sizeof(od) - 1, &p, &e) == 0 && p.root->kind == PV_DICT,
	   "OrderedDict() becomes an empty dict (%s)", e.msg);
	ckpt_pickle_free(&p);
}

/* Every prefix of every vector must fail cleanly; every single-byte change
 * must either parse or fail, never crash (checked under ASan / valgrind). */
static void check_robustness(void)
{
	struct ckpt_pickle p;
	struct ckpt_err e;
	int prefixes_ok = 1;
	size_t flips = 0;

	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		size_t len = vectors[i].len;
		unsigned char *copy = malloc(len);
		memcpy(copy, vectors[i].data, len);
		for (size_t k = 0; k < len; k++) {
			if (parse(copy, k, &p, &e) == 0) {
				prefixes_ok = 0;
				ckpt_pickle_free(&p);
			}
		}
		for (size_t k = 0; k < len; k++) {
			unsigned char orig = copy[k];
			copy[k] = (unsigned char)(orig ^ 0xff);
			if (parse(copy, len, &p, &e) == 0)
				ckpt_pickle_free(&p);
			copy[k] = (unsigned char)(orig + 1);
			if (parse(copy, len, &p, &e) == 0)
				ckpt_pickle_free(&p);
			copy[k] = orig;
			flips += 2;
		}
		free(copy);
	}
	ok(prefixes_ok, "every truncated prefix of every vector is rejected");
	ok(flips > 1000, "%zu single-byte corruptions parsed or rejected without crashing", flips);
}

static void check_fixtures(void)
{
	const char *const *names = tap_fixture_names;
	const char *fx = tap_fixtures();
	if (!fx) {
		printf("# shared fixtures absent: fixture checks skipped\n");
		return;
	}
	for (size_t i = 0; i < TAP_NFIXTURES; i++) {
		char path[4300];
		snprintf(path, sizeof(path), "%s/dcp/%s/.metadata", fx, names[i]);
		FILE *f = fopen(path, "rb");
		if (!ok(f != NULL, "%s: .metadata present", names[i]))
			continue;
		unsigned char *buf = malloc(1 << 20);
		size_t n = fread(buf, 1, 1 << 20, f);
		fclose(f);
		struct ckpt_pickle p;
		struct ckpt_err e;
		int rc = parse(buf, n, &p, &e);
		ok(rc == 0 && pv_dict_get(pv_obj_state(p.root), "state_dict_metadata") != NULL,
		   "%s: real .metadata parses to an object with state_dict_metadata (%s)", names[i], e.msg);
		if (rc == 0)
			ckpt_pickle_free(&p);
		free(buf);
	}
}

int main(void)
{
	for (int proto = 2; proto <= 5; proto++) {
		check_scalars(proto);
		check_memo(proto);
		check_metadata(proto);
	}
	check_malformed();
	check_aliases();
	check_robustness();
	check_fixtures();
	return tap_done();
}

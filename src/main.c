/* main.c - command line: mount (default), inspect, export. */
#define FUSE_USE_VERSION 312
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <fuse_lowlevel.h>
#include <fuse_opt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "blocks.h"
#include "convert.h"
#include "dcache.h"
#include "engine.h"
#include "frontends.h"
#include "gpu.h"
#include "fs.h"
#include "rundir.h"

struct cli {
	char *max_shard_size;
	char *cache_size;
	char *cache_dir;
	char *cache_min_free;
	char *prefetch;
	char *item_cache;
	char *gpu;
	char *assets;
	char *mapping;
	char *mapping_strict;
	char *dtype;
	char *view;
	char *ema_key;
	char *bagel_stage;
	char *explain;
	char *allow_holes_size;
	int allow_holes;
	int keep_all;
	int help;
	int version;
	int tensors;
	int quiet;
	char *pos[3];
	int npos;
	int too_many;
};

enum { KEY_HELP, KEY_VERSION };

#define CLI_OPT(t, f, v) { t, offsetof(struct cli, f), v }

static const struct fuse_opt cli_spec[] = {
	CLI_OPT("max_shard_size=%s", max_shard_size, 0),
	CLI_OPT("cache_size=%s", cache_size, 0),
	CLI_OPT("cache_dir=%s", cache_dir, 0),
	CLI_OPT("cache_min_free=%s", cache_min_free, 0),
	CLI_OPT("prefetch=%s", prefetch, 0),
	CLI_OPT("item_cache=%s", item_cache, 0),
	CLI_OPT("gpu=%s", gpu, 0),
	CLI_OPT("assets=%s", assets, 0),
	CLI_OPT("mapping=%s", mapping, 0),
	CLI_OPT("dtype=%s", dtype, 0),
	CLI_OPT("view=%s", view, 0),
	CLI_OPT("ema_key=%s", ema_key, 0),
	CLI_OPT("bagel_stage=%s", bagel_stage, 0),
	CLI_OPT("mapping_strict=%s", mapping_strict, 0),
	CLI_OPT("--explain=%s", explain, 0),
	CLI_OPT("allow_holes", allow_holes, 1),
	CLI_OPT("allow_holes=%s", allow_holes_size, 0),
	CLI_OPT("keep_all", keep_all, 1),
	CLI_OPT("--tensors", tensors, 1),
	CLI_OPT("--explain", tensors, 2),
	CLI_OPT("-q", quiet, 1),
	CLI_OPT("--quiet", quiet, 1),
	CLI_OPT("-h", help, 1),
	CLI_OPT("--help", help, 1),
	CLI_OPT("-V", version, 1),
	CLI_OPT("--version", version, 1),
	FUSE_OPT_END
};

static int cli_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct cli *c = data;
	(void)outargs;
	if (key == FUSE_OPT_KEY_NONOPT) {
		if (c->npos < 3)
			c->pos[c->npos++] = strdup(arg);
		else
			c->too_many = 1;
		return 0;
	}
	return 1;
}

static void usage(FILE *fp)
{
	fprintf(fp,
"usage: ckptfs SRC MOUNTPOINT [-f] [-s] [-o OPTION[,OPTION...]]\n"
"       ckptfs inspect SRC [--tensors|--explain[=NAME]] [-o OPTION...]\n"
"       ckptfs export SRC OUTDIR [-q] [-o OPTION...]\n"
"\n"
"Shows a PyTorch Distributed Checkpoint (DCP) directory as a read-only\n"
"HuggingFace safetensors directory.  Nothing is copied: every byte is\n"
"assembled from the checkpoint when it is read.\n"
"\n"
"ckptfs options:\n"
"  -o assets=DIR          also show DIR's config.json, tokenizer and other\n"
"                         non-weight files, byte for byte\n"
"  -o max_shard_size=N    tensor bytes per safetensors file (default 5GB;\n"
"                         suffixes KB MB GB TB and KiB MiB GiB TiB)\n"
"  -o mapping=auto|none|FILE\n"
"                         name and layout mapping: auto (default) picks a rule\n"
"                         file from the installed mapping/ directory by the\n"
"                         checkpoint's keys and the assets' config.json; none\n"
"                         keeps DCP names; FILE is a rule file of your own\n"
"  -o dtype=bf16|fp16|fp32|orig|auto\n"
"                         serve floating tensors in this dtype, converted on read\n"
"                         exactly as torch's tensor.to(dtype); orig: as stored;\n"
"                         auto: the assets' config.json torch_dtype; default:\n"
"                         as stored, or AutoModel's .hf_metadata dtypes (also\n"
"                         with auto)\n"
"  -o view=model|ema      serve the trained weights or their EMA copies\n"
"                         (TorchTitan ema.state.<name>.ema_params.<key>: model by\n"
"                         default; BAGEL ema.safetensors/model.safetensors or\n"
"                         ema/ and model/: ema by default); -o ema_key=KEY picks\n"
"                         one when there are several; a run root shows model/\n"
"                         and ema/ in each step holding both when view is unset\n"
"  -o bagel_stage=1|2     BAGEL: serve the UND keys (1) or UND+GEN (2), not all\n"
"  -o mapping_strict=0    leave out (and list) source tensors no rule matches\n"
"                         instead of refusing the checkpoint\n"
"  -o keep_all            show every tensor under its raw DCP name\n"
"                         (optimizer state included)\n"
"  -o allow_holes[=N]     zero-fill regions no chunk covers (with a warning)\n"
"                         instead of refusing the checkpoint, up to N bytes in\n"
"                         all (default: the size of the checkpoint's data files)\n"
"  -o cache_dir=DIR|auto  keep converted (and otherwise costly) blocks in DIR\n"
"                         across mounts; auto: $XDG_CACHE_HOME/ckptfs (off by\n"
"                         default; one ckptfs process per DIR)\n"
"  -o cache_size=N        cap of the cache directory (default 10GiB)\n"
"  -o cache_min_free=N    free space the cache leaves on its disk (default 1GiB)\n"
"  -o prefetch=N          mount: memory for blocks made ahead of a sequential\n"
"                         reader, in MiB or with a suffix (default 64 with more\n"
"                         than 2 CPUs, else 0: off)\n"
"  -o item_cache=N        memory for compressed and strided items (default 1GiB)\n"
"  -o gpu=on|off          convert large runs of elements on the GPU (builds with\n"
"                         --enable-cuda; falls back to the CPU; default off)\n"
"  --tensors              inspect: list every tensor\n"
"  --explain[=NAME]       inspect: how each output tensor (or NAME) is made\n"
"  -q, --quiet            export: no progress bar\n"
"\n"
"mount options (libfuse): -f foreground, -s single-threaded, -d debug,\n"
"  -o allow_other, -o clone_fd, -o max_threads=N; unmount with fusermount3 -u.\n");
}

/* "5GB", "500MB", "2GiB", "1000": bytes, or -EINVAL. */
static int parse_size(const char *s, uint64_t *out)
{
	static const struct { const char *suf; uint64_t mul; } sufs[] = {
		{ "", 1 }, { "B", 1 },
		{ "K", 1000ull }, { "KB", 1000ull }, { "M", 1000000ull }, { "MB", 1000000ull },
		{ "G", 1000000000ull }, { "GB", 1000000000ull },
		{ "T", 1000000000000ull }, { "TB", 1000000000000ull },
		{ "KiB", 1ull << 10 }, { "MiB", 1ull << 20 }, { "GiB", 1ull << 30 },
		{ "TiB", 1ull << 40 },
	};
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || v < 0)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(sufs) / sizeof(sufs[0]); i++) {
		if (strcasecmp(end, sufs[i].suf) == 0 &&
		    (strcmp(end, sufs[i].suf) == 0 || strlen(end) <= 2)) {
			double b = v * (double)sufs[i].mul;
			if (b > 1.8e19)
				return -EINVAL;
			*out = (uint64_t)b;
			return 0;
		}
	}
	return -EINVAL;
}

static int build_opts(const struct cli *c, struct ckpt_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->allow_holes = c->allow_holes;
	if (c->allow_holes_size) {
		if (parse_size(c->allow_holes_size, &o->max_hole_bytes)) {
			fprintf(stderr, "ckptfs: -o allow_holes=%s: expected a size such as 10GB\n",
				c->allow_holes_size);
			return -EINVAL;
		}
		o->allow_holes = o->max_hole_bytes > 0;
	}
	o->keep_all = c->keep_all;
	o->assets = c->assets;
	o->mapping = c->mapping;
	o->ema_key = c->ema_key;
	if (c->view) {
		if (strcmp(c->view, "model") && strcmp(c->view, "ema")) {
			fprintf(stderr, "ckptfs: -o view=%s: expected model or ema\n", c->view);
			return -EINVAL;
		}
		o->view_ema = !strcmp(c->view, "ema");
		o->view_model = !o->view_ema;
	}
	if (c->bagel_stage) {
		if (strcmp(c->bagel_stage, "1") && strcmp(c->bagel_stage, "2")) {
			fprintf(stderr, "ckptfs: -o bagel_stage=%s: expected 1 or 2\n", c->bagel_stage);
			return -EINVAL;
		}
		o->bagel_stage = c->bagel_stage[0] - '0';
	}
	if (c->dtype) {
		static const struct { const char *name; enum ckpt_dtype dt; } dts[] = {
			{ "bf16", CKPT_DT_BF16 }, { "bfloat16", CKPT_DT_BF16 },
			{ "fp16", CKPT_DT_F16 }, { "float16", CKPT_DT_F16 }, { "half", CKPT_DT_F16 },
			{ "fp32", CKPT_DT_F32 }, { "float32", CKPT_DT_F32 }, { "float", CKPT_DT_F32 },
			{ "orig", CKPT_DT_INVALID },
		};
		size_t i;
		for (i = 0; i < sizeof(dts) / sizeof(dts[0]) && strcmp(dts[i].name, c->dtype); i++)
			;
		if (!strcmp(c->dtype, "auto")) {
			o->dtype_auto = 1;
		} else if (i == sizeof(dts) / sizeof(dts[0])) {
			fprintf(stderr, "ckptfs: -o dtype=%s: expected bf16, fp16, fp32, orig or auto\n",
				c->dtype);
			return -EINVAL;
		} else {
			o->dtype = dts[i].dt;
			o->dtype_orig = o->dtype == CKPT_DT_INVALID;
		}
	}
	if (c->mapping_strict) {
		if (strcmp(c->mapping_strict, "0") && strcmp(c->mapping_strict, "1")) {
			fprintf(stderr, "ckptfs: -o mapping_strict=%s: expected 0 or 1\n", c->mapping_strict);
			return -EINVAL;
		}
		o->mapping_lax = c->mapping_strict[0] == '0';
	}
	o->max_shard_size = CKPT_DEFAULT_MAX_SHARD;
	if (c->max_shard_size && (parse_size(c->max_shard_size, &o->max_shard_size) ||
				  o->max_shard_size == 0)) {
		fprintf(stderr, "ckptfs: -o max_shard_size=%s: expected a positive size such as 5GB\n",
			c->max_shard_size);
		return -EINVAL;
	}
	if (c->item_cache && parse_size(c->item_cache, &o->cache_bytes)) {
		fprintf(stderr, "ckptfs: -o item_cache=%s: expected a size such as 1GiB\n", c->item_cache);
		return -EINVAL;
	}
	o->cache_size = CKPT_DEFAULT_CACHE_SIZE;
	o->cache_min_free = CKPT_DEFAULT_CACHE_MIN_FREE;
	/* Read-ahead needs spare cores: the reader and the FUSE thread take two
	 * (measured on 2 vCPUs, a single cat of a bf16 mount is 1.17x slower with
	 * it), so by default it is on only with more than two CPUs. */
	o->prefetch = sysconf(_SC_NPROCESSORS_ONLN) > 2 ? CKPT_DEFAULT_PREFETCH : 0;
	if (c->cache_size && (parse_size(c->cache_size, &o->cache_size) || !o->cache_size)) {
		fprintf(stderr, "ckptfs: -o cache_size=%s: expected a positive size such as 10GiB\n",
			c->cache_size);
		return -EINVAL;
	}
	if (c->cache_min_free && parse_size(c->cache_min_free, &o->cache_min_free)) {
		fprintf(stderr, "ckptfs: -o cache_min_free=%s: expected a size such as 1GiB\n",
			c->cache_min_free);
		return -EINVAL;
	}
	if (c->prefetch) {
		size_t n = strspn(c->prefetch, "0123456789");
		if (n && !c->prefetch[n] && n < 12)
			o->prefetch = strtoull(c->prefetch, NULL, 10) << 20;  /* MiB */
		else if (parse_size(c->prefetch, &o->prefetch)) {
			fprintf(stderr, "ckptfs: -o prefetch=%s: expected MiB or a size such as 256MiB\n",
				c->prefetch);
			return -EINVAL;
		}
	}
	o->cache_dir = c->cache_dir;
	if (c->gpu && strcmp(c->gpu, "on") && strcmp(c->gpu, "off")) {
		fprintf(stderr, "ckptfs: -o gpu=%s: expected on or off\n", c->gpu);
		return -EINVAL;
	}
	o->gpu = c->gpu && !strcmp(c->gpu, "on");
#ifndef HAVE_CUDA
	if (o->gpu) {
		fprintf(stderr, "ckptfs: -o gpu=on: this ckptfs was built without CUDA "
			"(./configure --enable-cuda)\n");
		return -EINVAL;
	}
#endif
	return 0;
}

/* The default cache directory: $XDG_CACHE_HOME/ckptfs or ~/.cache/ckptfs. */
static char *default_cache_dir(void)
{
	const char *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
	char buf[4096];
	if (x && x[0] == '/')
		snprintf(buf, sizeof(buf), "%s/ckptfs", x);
	else if (h && h[0] == '/')
		snprintf(buf, sizeof(buf), "%s/.cache/ckptfs", h);
	else
		return NULL;
	return strdup(buf);
}

/* -o gpu=on: the GPU is opened on first use, in the process that converts
 * (a mount daemonizes with fork, which a CUDA context does not survive);
 * when it cannot be used, or a call fails, the CPU converts (a warning,
 * once). */
#define GPU_MIN_ELEMS (1u << 20)
#define GPU_CHUNK (64u << 20)
static pthread_once_t gpu_once = PTHREAD_ONCE_INIT;
static struct ckpt_gpu *gpu;
static int gpu_warned;

static void gpu_open_once(void)
{
	struct ckpt_err e = { 0 };
	if (ckpt_gpu_open(&gpu, GPU_CHUNK, &e))
		ckpt_warn("-o gpu=on: %s; converting on the CPU", e.msg);
}

static int gpu_offload(void *ctx, enum ckpt_dtype from, enum ckpt_dtype to, const void *src,
		       void *dst, size_t n)
{
	struct ckpt_err e = { 0 };
	(void)ctx;
	pthread_once(&gpu_once, gpu_open_once);
	if (!gpu)
		return -1;
	if (ckpt_gpu_convert(gpu, from, to, src, dst, n, &e)) {
		if (!__atomic_exchange_n(&gpu_warned, 1, __ATOMIC_RELAXED))
			ckpt_warn("-o gpu=on: %s; this and later failed runs are converted on the CPU",
				  e.msg);
		return -1;
	}
	return 0;
}

/* Opens what the engines of this process share: the cache directory, and
 * for a mount the block pool with its read-ahead workers.  A cache
 * directory in use by another ckptfs is skipped with a warning. */
static int open_shared(struct ckpt_opts *o, int mount)
{
	struct ckpt_err e = { 0 };
	char *dir = NULL;
	int rc;

	if (o->cache_dir) {
		if (!strcmp(o->cache_dir, "auto") && !(dir = default_cache_dir())) {
			fprintf(stderr, "ckptfs: -o cache_dir=auto: neither XDG_CACHE_HOME nor HOME is "
				"set to an absolute path\n");
			return 1;
		}
		rc = ckpt_dcache_open(&o->dcache, dir ? dir : o->cache_dir, o->cache_size,
				      o->cache_min_free, &e);
		free(dir);
		if (rc == -EBUSY) {
			ckpt_warn("%s; going on without the on-disk cache", e.msg);
		} else if (rc) {
			ckpt_print_line(stderr, "ckptfs: %s", e.msg);
			return 1;
		}
	}
	if (o->gpu)
		ckpt_convert_set_offload(gpu_offload, NULL, GPU_MIN_ELEMS);
	if (mount && (o->prefetch || o->dcache)) {
		long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		/* one worker per CPU beyond the reader's and the FUSE thread's */
		int workers = !o->prefetch ? 0 : ncpu <= 3 ? 1 : ncpu - 2 > 8 ? 8 : (int)ncpu - 2;
		if (ckpt_blocks_new(&o->blocks, o->prefetch, CKPT_BLOCK, workers)) {
			fprintf(stderr, "ckptfs: out of memory\n");
			ckpt_dcache_close(o->dcache);
			o->dcache = NULL;
			return 1;
		}
	}
	return 0;
}

/* Frees what open_shared made, after every engine using it is closed. */
static void close_shared(struct ckpt_opts *o)
{
	ckpt_convert_set_offload(NULL, NULL, 0);
	ckpt_gpu_close(gpu);
	gpu = NULL;
	ckpt_blocks_free(o->blocks);
	ckpt_dcache_close(o->dcache);
	o->blocks = NULL;
	o->dcache = NULL;
}

static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void free_cli(struct cli *c)
{
	free(c->max_shard_size);
	free(c->cache_size);
	free(c->cache_dir);
	free(c->cache_min_free);
	free(c->prefetch);
	free(c->item_cache);
	free(c->allow_holes_size);
	free(c->gpu);
	free(c->assets);
	free(c->mapping);
	free(c->mapping_strict);
	free(c->dtype);
	free(c->view);
	free(c->ema_key);
	free(c->bagel_stage);
	free(c->explain);
	for (int i = 0; i < c->npos; i++)
		free(c->pos[i]);
}

/* Opens the engine of src with options o (shared state already open). */
static int open_engine(struct ckpt_engine *g, const char *src, const struct ckpt_opts *o)
{
	struct ckpt_err e = { 0 };

	if (ckpt_engine_open(g, src, o, &e)) {
		ckpt_print_line(stderr, "ckptfs: %s", e.msg);
		return 1;
	}
	return 0;
}

/* inspect of a run root: every step with its state; export refuses. */
static int inspect_run(const char *cmd, const struct cli *c)
{
	struct ckpt_run *run;
	struct ckpt_opts o;
	struct ckpt_err e = { 0 };
	char latest[4096];

	if (strcmp(cmd, "inspect") != 0) {
		ckpt_print_line(stderr, "ckptfs export: %s is a training run root with several steps; "
				"export one step directory", c->pos[0]);
		return 2;
	}
	if (build_opts(c, &o))
		return 2;
	if (ckpt_run_open(&run, c->pos[0], &o, &e)) {
		ckpt_print_line(stderr, "ckptfs: %s", e.msg);
		return 1;
	}
	ckpt_print_line(stdout, "run root: %s", c->pos[0]);
	for (size_t i = 0; i < ckpt_run_count(run); i++) {
		int visible = 0;
		const char *why = NULL, *name = ckpt_run_step(run, i, &visible, &why);
		struct ckpt_engine *g = visible ? ckpt_run_engine(run, i, &e) : NULL;
		if (g)
			ckpt_print_line(stdout, "  %-30s %zu tensors, %zu files%s%s%s", name, g->view.n,
					g->layout.n, g->view.mapping ? ", mapping " : "",
					g->view.mapping ? g->view.mapping : "",
					ckpt_run_split(run, i) ? "; shown as model/ and ema/" : "");
		else
			ckpt_print_line(stdout, "  %-30s hidden: %s", name, visible ? e.msg : why);
		ckpt_err_clear(&e);
	}
	const char *l = ckpt_run_latest(run, latest, sizeof(latest));
	ckpt_print_line(stdout, "latest: %s", l ? l : "(none)");
	ckpt_run_close(run);
	return 0;
}

static int run_tool(const char *cmd, struct fuse_args *args, struct cli *c)
{
	struct ckpt_engine g;
	int want = strcmp(cmd, "export") == 0 ? 2 : 1, rc;

	if (args->argc > 1) {
		int o = !strcmp(args->argv[1], "-o") && args->argc > 2;
		fprintf(stderr, "ckptfs %s: unknown option '%s%s%s'\n", cmd, args->argv[1], o ? " " : "",
			o ? args->argv[2] : "");
		return 2;
	}
	if (c->npos != want || c->too_many) {
		fprintf(stderr, "ckptfs %s: expected %s\n", cmd,
			want == 2 ? "SRC OUTDIR" : "SRC");
		return 2;
	}
	if (ckpt_run_detect(c->pos[0]))
		return inspect_run(cmd, c);
	struct ckpt_opts o;
	if (build_opts(c, &o))
		return 2;
	if (want == 1)
		o.cache_dir = NULL;  /* inspect reads no data */
	if ((rc = open_shared(&o, 0)))
		return rc;
	if ((rc = open_engine(&g, c->pos[0], &o))) {
		close_shared(&o);
		return rc;
	}
	if (want == 1) {
		ckpt_inspect(&g, stdout, c->explain ? 2 : c->tensors, c->explain);
	} else {
		struct ckpt_err e = { 0 };
		if (ckpt_export(&g, c->pos[1], !c->quiet, &e)) {
			ckpt_print_line(stderr, "ckptfs export: %s", e.msg);
			rc = 1;
		}
	}
	ckpt_engine_close(&g);
	close_shared(&o);
	return rc;
}

static int run_mount(struct fuse_args *args, struct cli *c)
{
	struct fuse_cmdline_opts fo;
	struct ckpt_engine g;
	struct ckpt_opts o;
	int rc;

	if (c->npos != 2 || c->too_many) {
		fprintf(stderr, "ckptfs: expected SRC and MOUNTPOINT (see ckptfs --help)\n");
		return 2;
	}
	if (fuse_opt_add_arg(args, c->pos[1]) || fuse_parse_cmdline(args, &fo) != 0)
		return 2;
	if (fo.show_help || fo.show_version || !fo.mountpoint) {
		free(fo.mountpoint);
		return 2;
	}
	if (build_opts(c, &o)) {
		free(fo.mountpoint);
		return 2;
	}
	if ((rc = open_shared(&o, 1))) {
		free(fo.mountpoint);
		return rc;
	}
	if (ckpt_run_detect(c->pos[0])) {
		struct ckpt_run *run;
		struct ckpt_err e = { 0 };
		if (ckpt_run_open(&run, c->pos[0], &o, &e)) {
			ckpt_print_line(stderr, "ckptfs: %s", e.msg);
			close_shared(&o);
			free(fo.mountpoint);
			return 1;
		}
		rc = ckpt_fs_serve(NULL, run, args, fo.mountpoint, fo.foreground, fo.singlethread,
				   fo.clone_fd, fo.max_threads);
		ckpt_run_close(run);
	} else {
		if ((rc = open_engine(&g, c->pos[0], &o))) {
			close_shared(&o);
			free(fo.mountpoint);
			return rc;
		}
		if (!g.opts.assets)
			ckpt_warn("%s: no config.json next to the weights and no -o assets=DIR: "
				  "serving the weights only", c->pos[0]);
		else if (g.assets_found)
			ckpt_print_line(stderr, "ckptfs: assets from %s (%s)", g.opts.assets,
					g.assets_origin ? g.assets_origin : "found");
		rc = ckpt_fs_serve(&g, NULL, args, fo.mountpoint, fo.foreground, fo.singlethread,
				   fo.clone_fd, fo.max_threads);
		ckpt_engine_close(&g);
	}
	close_shared(&o);
	if (rc)
		fprintf(stderr, "ckptfs: mounting %s on %s failed\n", c->pos[0], fo.mountpoint);
	free(fo.mountpoint);
	return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct cli c = { 0 };
	const char *cmd = NULL;
	int rc;

	if (argc > 1 && (strcmp(argv[1], "inspect") == 0 || strcmp(argv[1], "export") == 0)) {
		cmd = argv[1];
		argv[1] = argv[0];
		argv++;
		argc--;
	}
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	if (fuse_opt_parse(&args, &c, cli_spec, cli_proc) != 0) {
		free_cli(&c);
		return 2;
	}
	if (c.help) {
		usage(stdout);
		rc = 0;
	} else if (c.version) {
#ifdef HAVE_CUDA
		printf("ckptfs %s (libfuse %d, CUDA)\n", PACKAGE_VERSION, fuse_version());
#else
		printf("ckptfs %s (libfuse %d)\n", PACKAGE_VERSION, fuse_version());
#endif
		rc = 0;
	} else {
		raise_fd_limit();
		rc = cmd ? run_tool(cmd, &args, &c) : run_mount(&args, &c);
	}
	fuse_opt_free_args(&args);
	free_cli(&c);
	return rc;
}

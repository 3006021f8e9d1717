/* fuzz-metadata.c - libFuzzer harness: the input is a checkpoint's .metadata
 * pickle.  It is written into a private scratch directory that also holds
 * copies of the data files of a small fixed checkpoint (tests/fuzz/data/
 * metadata: real torch-written .distcp files, one of them zstd-compressed,
 * plus shared-fixture data files under subdirectories), then the checkpoint
 * is opened with ckpt_engine_open, every file of the layout is read (in
 * windows, twice with different read sizes, compared) and the engine is
 * closed.  This drives the .metadata interpreter, path confinement, item
 * decoding, coverage checks, the view, the layout and the read path.
 * Options (allow_holes, keep_all, max_shard_size, cache size) are derived
 * from a hash of the input. */
#define _GNU_SOURCE 1  /* nftw, mkdtemp */
#include "config.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz-common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char ckdir[PATH_MAX], mdpath[PATH_MAX];

static void setup(void)
{
	char src[PATH_MAX];
	const char *s = fz_scratch();
	snprintf(ckdir, sizeof(ckdir), "%s/ckpt", s);
	snprintf(mdpath, sizeof(mdpath), "%s/.metadata", ckdir);
	if (mkdir(ckdir, 0755) && errno != EEXIST)
		abort();
	fz_data_dir("metadata", src, sizeof(src));
	fz_copy_tree(src, ckdir);
	ckpt_warn_set_quiet(1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ckpt_engine g;
	struct ckpt_opts o;
	struct ckpt_err e = { 0 };

	if (!ckdir[0])
		setup();
	fz_write(mdpath, data, size);
	fz_opts(data, size, &o);
	if (ckpt_engine_open(&g, ckdir, &o, &e) == 0) {
		fz_read_all(&g);
		ckpt_engine_close(&g);
	} else if (!e.msg[0] || e.code >= 0) {
		fprintf(stderr, "open failed without a message (rc %d)\n", e.code);
		abort();
	}
	return 0;
}

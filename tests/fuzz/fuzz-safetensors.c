/* fuzz-safetensors.c - libFuzzer harness: the input is a whole safetensors
 * file (8-byte header length, JSON header, data), written as x.safetensors
 * into a private scratch directory; the directory is opened as safetensors
 * input with ckpt_engine_open, every file of the layout is read (windows,
 * twice, compared) and the engine is closed.  Options come from a hash of
 * the input. */
#define _GNU_SOURCE 1  /* nftw, mkdtemp */
#include "config.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz-common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char stdir[PATH_MAX], stpath[PATH_MAX];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ckpt_engine g;
	struct ckpt_opts o;
	struct ckpt_err e = { 0 };

	if (!stdir[0]) {
		snprintf(stdir, sizeof(stdir), "%s/st", fz_scratch());
		snprintf(stpath, sizeof(stpath), "%s/x.safetensors", stdir);
		if (mkdir(stdir, 0755) && errno != EEXIST)
			abort();
		ckpt_warn_set_quiet(1);
	}
	fz_write(stpath, data, size);
	fz_opts(data, size, &o);
	if (ckpt_engine_open(&g, stdir, &o, &e) == 0) {
		fz_read_all(&g);
		ckpt_engine_close(&g);
	} else if (!e.msg[0] || e.code >= 0) {
		fprintf(stderr, "open failed without a message (rc %d)\n", e.code);
		abort();
	}
	return 0;
}

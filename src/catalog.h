/* catalog.h - the catalogue: every tensor of a DCP checkpoint with its dtype,
 * global shape and chunks, each chunk bound to its storage item.  Built from
 * metadata only (plus the small torch.save headers of each item); tensor data
 * is never read here.  Immutable after ckpt_catalog_open() except for the
 * lazily decoded items of transformed (compressed) chunks, which chunkio.c
 * fills under its own lock. */
#ifndef CKPT_CATALOG_H
#define CKPT_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "err.h"
#include "item.h"
#include "opts.h"

struct ckpt_source_file {
	char *relpath;   /* as recorded in the metadata, checked to stay inside */
	int fd;
	uint64_t size;
};

struct ckpt_chunk {
	int64_t off[CKPT_MAXDIM], size[CKPT_MAXDIM];
	uint64_t numel;
	uint32_t file;            /* index into catalog->files */
	uint64_t item_off, item_len;
	int zstd;                 /* item is zstd-compressed (stream.zstd/1) */
	int decoded;              /* item below is valid */
	struct ckpt_item item;    /* layout inside the (decompressed) item */
};

struct ckpt_tensor {
	char *name;               /* the DCP fqn */
	enum ckpt_dtype dtype;
	int ndim;
	int64_t shape[CKPT_MAXDIM];
	uint64_t numel, nbytes;
	struct ckpt_chunk *chunks; /* non-empty chunks only, deduplicated */
	size_t nchunks;
	int holes;                /* chunks do not cover the tensor (allow_holes) */
};

struct ckpt_catalog {
	char *dir;                /* the checkpoint directory as given */
	char *realdir;            /* its canonical path */
	char *md_desc;            /* which metadata files were read */
	int64_t mtime;            /* newest metadata file mtime (seconds) */
	struct ckpt_source_file *files;
	size_t nfiles;
	struct ckpt_tensor *tensors;  /* sorted by name */
	size_t ntensors;
	char **bytes;             /* names of non-tensor (bytes) entries */
	size_t nbytes;
	char **skipped;           /* entries of unknown kind, with the reason */
	size_t nskipped;
};

/* Opens the DCP checkpoint in dir: reads .metadata (or merges __*.metadata),
 * validates paths, file sizes and chunk coverage, and decodes the header of
 * every uncompressed item.  On failure returns -errno with a message in e and
 * leaves nothing to free. */
int ckpt_catalog_open(struct ckpt_catalog *c, const char *dir, const struct ckpt_opts *o,
		      struct ckpt_err *e);

void ckpt_catalog_close(struct ckpt_catalog *c);

/* Checks that relpath is a safe relative path inside realdir and opens it
 * read-only.  Used for metadata-provided paths.  Returns an fd or -errno. */
int ckpt_open_inside(const char *realdir, const char *relpath, struct ckpt_err *e);

/* Checks a decoded item against its tensor and chunk (dtype, shape) and
 * stores it in ch.  label names the item in messages. */
int ckpt_chunk_bind(const struct ckpt_tensor *t, struct ckpt_chunk *ch, const struct ckpt_item *it,
		    const char *label, struct ckpt_err *e);

/* Writes a label naming the item of chunk ch ("dir/file (item of 'fqn' at
 * file offset N)") into buf. */
void ckpt_item_label(const struct ckpt_catalog *c, const struct ckpt_tensor *t,
		     const struct ckpt_chunk *ch, char *buf, size_t n);

#endif

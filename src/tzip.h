/* tzip.h - the zip reader for torch.save archives embedded in DCP items.
 *
 * Reads the central directory (zip64 aware: torch always writes the zip64
 * end records), then each local header to find where a record's data starts.
 * Only stored (uncompressed) records are accepted.  Offsets are relative to
 * the blob, i.e. to the start of the item. */
#ifndef CKPT_TZIP_H
#define CKPT_TZIP_H

#include <stdint.h>

#include "blob.h"

struct tzip_entry {
	char *name;         /* full record name, e.g. "archive/data/0" */
	uint64_t data_off;  /* first data byte, relative to the blob */
	uint64_t size;
};

struct tzip {
	struct tzip_entry *ents;
	size_t n;
	char *prefix;       /* e.g. "archive": the first entry's name up to '/' */
};

/* Parses the archive in b.  On success z must be freed with tzip_free().
 * Errors name b->label and the byte offset.  Thread-safe (reads only). */
int tzip_open(struct tzip *z, const struct ckpt_blob *b, struct ckpt_err *e);

/* The record named "<prefix>/<rel>", or NULL. */
const struct tzip_entry *tzip_find(const struct tzip *z, const char *rel);

void tzip_free(struct tzip *z);

#endif

/* jsonfile.h - loading a JSON file that may come from an untrusted
 * directory (assets, checkpoint metadata, rule files). */
#ifndef CKPT_JSONFILE_H
#define CKPT_JSONFILE_H

#include <jansson.h>

#define CKPT_JSON_MAX (64u << 20)  /* larger files are refused */

/* Parses path with jansson flags when it is a regular file (never a FIFO or
 * a device, which could block or never end) of at most CKPT_JSON_MAX bytes.
 * NULL otherwise, with a reason in je (when not NULL) as jansson gives it.
 * Thread-safe. */
json_t *ckpt_json_load(const char *path, size_t flags, json_error_t *je);

#endif

/* strmap.h - a small string-keyed hash map (open addressing).  Keys are
 * copied; values are opaque pointers owned by the caller.  Not thread-safe. */
#ifndef CKPT_STRMAP_H
#define CKPT_STRMAP_H

#include <stddef.h>

struct strmap {
	char **keys;
	void **vals;
	size_t n, cap;
};

/* Inserts or replaces key.  Returns 0 or -ENOMEM. */
int strmap_put(struct strmap *m, const char *key, void *val);
/* The value for key, or NULL. */
void *strmap_get(const struct strmap *m, const char *key);
/* Calls fn on every value (in no particular order). */
void strmap_each(const struct strmap *m, void (*fn)(void *val));
/* Frees the keys and the table (not the values). */
void strmap_free(struct strmap *m);

#endif

/* frontends.h - the non-FUSE front ends over an engine. */
#ifndef CKPT_FRONTENDS_H
#define CKPT_FRONTENDS_H

#include <stdio.h>

#include "engine.h"

/* Writes every file of the engine's layout into directory out (created with
 * its parents if missing; must be empty and outside the source).  With progress set, shows a
 * progress bar when stderr is a terminal.  Returns 0 or -errno with a message in e. */
int ckpt_export(struct ckpt_engine *g, const char *out, int progress, struct ckpt_err *e);

/* Prints what the mount would show.  detail 1: one line per tensor; 2: also
 * the recipe of each (only of the tensor called only, when not NULL). */
void ckpt_inspect(const struct ckpt_engine *g, FILE *fp, int detail, const char *only);

#endif

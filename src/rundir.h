/* rundir.h - a training run root: one subdirectory per saved step.
 *
 * Each complete step (a directory holding a checkpoint, directly or at a
 * known inner path: model/ckpt (VeOmni), model (AutoModel), ckpt, checkpoint)
 * becomes one engine, opened on first use.  Incomplete saves (no .metadata,
 * only .metadata.tmp; or, in a run whose steps carry VeOmni's
 * checkpoint_manifest.json, a step without one) are hidden, with the reason
 * kept for inspect.  A step whose checkpoint holds both trained weights and
 * an EMA copy (TorchTitan ema.state.*, BAGEL's ema/model pair) shows model/
 * and ema/ subdirectories when -o view is not given.  The
 * root is rescanned on demand, so steps saved while mounted appear; step
 * indices never change, so inode numbers stay stable.  Thread-safe: every
 * function takes the run's lock. */
#ifndef CKPT_RUNDIR_H
#define CKPT_RUNDIR_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"

struct ckpt_run;

/* Whether dir looks like a run root: not a checkpoint itself, but at least
 * one subdirectory holds one (or an incomplete one). */
int ckpt_run_detect(const char *dir);

/* Opens the run at dir; options o are copied for every step. */
int ckpt_run_open(struct ckpt_run **out, const char *dir, const struct ckpt_opts *o,
		  struct ckpt_err *e);
void ckpt_run_close(struct ckpt_run *r);

/* Rescans the root when the last scan is older than max_age_ms. */
void ckpt_run_rescan(struct ckpt_run *r, unsigned max_age_ms);

/* Number of steps ever seen (indices 0..n-1). */
size_t ckpt_run_count(struct ckpt_run *r);

/* Step i: its name, and whether it is visible (complete). Returns NULL for
 * an index out of range.  The name stays valid until ckpt_run_close. */
const char *ckpt_run_step(struct ckpt_run *r, size_t i, int *visible, const char **why);

/* Index of the visible step called name, or -1. */
long ckpt_run_find(struct ckpt_run *r, const char *name);

/* The engine of step i, opened on first use; NULL with a message in e when
 * it cannot be opened (the failure is remembered). */
struct ckpt_engine *ckpt_run_engine(struct ckpt_run *r, size_t i, struct ckpt_err *e);

/* Whether step i shows model/ and ema/ subdirectories instead of files:
 * its checkpoint holds trained weights and an EMA copy, and -o view was not
 * given.  Opens the step's engine. */
int ckpt_run_split(struct ckpt_run *r, size_t i);

/* The engine of view (CKPT_VIEW_MODEL or CKPT_VIEW_EMA) of a split step i,
 * opened on first use; NULL with a message in e otherwise. */
struct ckpt_engine *ckpt_run_view_engine(struct ckpt_run *r, size_t i, int view,
					 struct ckpt_err *e);

/* Name of the newest visible step (by iteration number in its name, or
 * Megatron's latest_checkpointed_iteration.txt), or NULL. Copied into buf. */
const char *ckpt_run_latest(struct ckpt_run *r, char *buf, size_t n);

#endif

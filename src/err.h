/* err.h - error reporting: every function returns 0 or -errno and, on failure,
 * leaves a one-line human message in a struct ckpt_err that travels up to the
 * edge (CLI or FUSE reply).  Messages name the file, byte offset or key, and
 * what was expected. */
#ifndef CKPT_ERR_H
#define CKPT_ERR_H

#include <stdarg.h>
#include <stdio.h>

struct ckpt_err {
	int code;        /* negative errno of the first failure, 0 if none */
	char msg[1024];  /* the message, "" if none */
};

/* Records a failure (only the first one: later calls keep the original
 * message) and returns code, which must be a negative errno.  e may be NULL. */
int ckpt_err_set(struct ckpt_err *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prepends "prefix: " to the stored message, to add context on the way up. */
void ckpt_err_prefix(struct ckpt_err *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Writes s to fp with control bytes (newline, ESC, ...) shown as \xNN, so
 * names taken from a checkpoint can never break a line or steer a terminal. */
void ckpt_fputs_safe(const char *s, FILE *fp);

/* printf-style line through ckpt_fputs_safe, newline appended. */
void ckpt_print_line(FILE *fp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Clears e. */
void ckpt_err_clear(struct ckpt_err *e);

/* Warnings go to a process-wide sink: stderr by default.  Thread-safe. */
void ckpt_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Number of warnings emitted so far. */
unsigned ckpt_warn_count(void);

/* When quiet is set, warnings are counted but not printed. */
void ckpt_warn_set_quiet(int quiet);

#endif

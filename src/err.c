/* err.c - see err.h. */
#include "config.h"
#include "err.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

int ckpt_err_set(struct ckpt_err *e, int code, const char *fmt, ...)
{
	if (e && e->code == 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
		va_end(ap);
		e->code = code;
	}
	return code;
}

void ckpt_err_prefix(struct ckpt_err *e, const char *fmt, ...)
{
	char pre[512], old[sizeof(e->msg)];
	va_list ap;

	if (!e)
		return;
	va_start(ap, fmt);
	vsnprintf(pre, sizeof(pre), fmt, ap);
	va_end(ap);
	memcpy(old, e->msg, sizeof(old));
	size_t pl = strlen(pre);
	if (pl > sizeof(e->msg) - 3)
		pl = sizeof(e->msg) - 3;
	memcpy(e->msg, pre, pl);
	memcpy(e->msg + pl, ": ", 2);
	size_t ol = strnlen(old, sizeof(old) - 1);
	if (ol > sizeof(e->msg) - pl - 3)
		ol = sizeof(e->msg) - pl - 3;
	memcpy(e->msg + pl + 2, old, ol);
	e->msg[pl + 2 + ol] = '\0';
}

void ckpt_fputs_safe(const char *s, FILE *fp)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			fprintf(fp, "\\x%02x", *p);
		else
			fputc(*p, fp);
	}
}

void ckpt_print_line(FILE *fp, const char *fmt, ...)
{
	char buf[8192];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	ckpt_fputs_safe(buf, fp);
	fputc('\n', fp);
}

void ckpt_err_clear(struct ckpt_err *e)
{
	e->code = 0;
	e->msg[0] = '\0';
}

static pthread_mutex_t warn_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned warn_count;
static int warn_quiet;

void ckpt_warn(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&warn_lock);
	warn_count++;
	if (!warn_quiet) {
		char buf[4096];
		va_start(ap, fmt);
		vsnprintf(buf, sizeof(buf), fmt, ap);
		va_end(ap);
		fputs("ckptfs: warning: ", stderr);
		ckpt_fputs_safe(buf, stderr);
		fputc('\n', stderr);
	}
	pthread_mutex_unlock(&warn_lock);
}

unsigned ckpt_warn_count(void)
{
	unsigned n;
	pthread_mutex_lock(&warn_lock);
	n = warn_count;
	pthread_mutex_unlock(&warn_lock);
	return n;
}

void ckpt_warn_set_quiet(int quiet)
{
	pthread_mutex_lock(&warn_lock);
	warn_quiet = quiet;
	pthread_mutex_unlock(&warn_lock);
}

/* tap.h - a minimal TAP producer for the unit tests (plan printed last). */
#ifndef CKPT_TAP_H
#define CKPT_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int tap_n, tap_failed;

__attribute__((format(printf, 4, 5)))
static int tap_ok(int cond, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	printf("%sok %d - ", cond ? "" : "not ", ++tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	if (!cond) {
		printf("#   failed at %s:%d\n", file, line);
		tap_failed++;
	}
	fflush(stdout);
	return cond;
}

#define ok(cond, ...) tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

__attribute__((unused)) static int tap_done(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

/* The shared fixtures directory, or NULL when it is absent. */
__attribute__((unused)) static const char *tap_fixtures(void)
{
	const char *f = getenv("CKPTFS_FIXTURES");
	static char buf[4096];
	if (!f) {
		snprintf(buf, sizeof(buf), "%s/../shared/fixtures", getenv("srcdir") ? getenv("srcdir") : ".");
		f = buf;
	}
	FILE *probe;
	char p[4200];
	snprintf(p, sizeof(p), "%s/SOURCES.md", f);
	if (!(probe = fopen(p, "r")))
		return NULL;
	fclose(probe);
	return f;
}

#endif

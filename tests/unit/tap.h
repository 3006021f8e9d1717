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

/* The shared DCP fixtures every reader test walks. */
__attribute__((unused)) static const char *const tap_fixture_names[] = {
	"torch1.13-per-item-files", "torch1.13-shardedtensor-2ranks", "torch2.6-dtensor-2ranks",
	"lightning-fsdp1-torch2.0", "megatron-core0.10-tp1", "megatron-core0.9-tp2",
	"megatron-core0.16-tp2-mcoremetadata",
};
#define TAP_NFIXTURES (sizeof(tap_fixture_names) / sizeof(tap_fixture_names[0]))

#endif

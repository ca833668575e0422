/* log.c - leveled messages to stderr with the file and line that raised them. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int log_level = -1; /* -1: not read from LSPO_LOG yet */
static _Thread_local int quiet;   /* > 0: this thread's messages are dropped */

void lspo_log_level_push_quiet(void) { quiet++; }
void lspo_log_level_pop(void) { quiet--; }

static int level_from_env(void)
{
	const char *names[] = { "error", "warn", "info", "debug" };
	const char *env = getenv("LSPO_LOG");
	for (int i = 0; env && i < 4; i++)
		if (strcmp(env, names[i]) == 0)
			return i;
	return LSPO_LOG_WARN;
}

void lspo_log_set_level(enum lspo_log_level level)
{
	log_level = level;
}

void lspo_log_at(enum lspo_log_level level, const char *file, int line, const char *fmt, ...)
{
	static const char *const tags[] = { "error", "warning", "info", "debug" };
	if (log_level < 0)
		log_level = level_from_env();
	if ((int)level > log_level || quiet > 0)
		return;
	const char *base = strrchr(file, '/');
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "lspo: %s:%d: %s: ", base ? base + 1 : file, line, tags[level]);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

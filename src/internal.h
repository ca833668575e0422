/*
 * internal.h - what every lspo source file shares and users never see:
 * logging with file and line, and StarPU return-code checks.
 */
#ifndef LSPO_INTERNAL_H
#define LSPO_INTERNAL_H

#include "config.h"
#include "lspo.h"

/* printf-style message to stderr, prefixed "lspo: file:line: level:". */
void lspo_log_at(enum lspo_log_level level, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#define lspo_error(...) lspo_log_at(LSPO_LOG_ERROR, __FILE__, __LINE__, __VA_ARGS__)
#define lspo_warn(...)  lspo_log_at(LSPO_LOG_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define lspo_info(...)  lspo_log_at(LSPO_LOG_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define lspo_debug(...) lspo_log_at(LSPO_LOG_DEBUG, __FILE__, __LINE__, __VA_ARGS__)

/* Drop this thread's messages until the matching pop (for queries such as
 * "is this config valid?" that report through their return value). */
void lspo_log_level_push_quiet(void);
void lspo_log_level_pop(void);

/* Logs and returns `status` from the enclosing function. */
#define LSPO_FAIL(status, ...) do { lspo_error(__VA_ARGS__); return (status); } while (0)

/* Evaluates a StarPU call; on a negative return logs it and returns the
 * matching lspo status from the enclosing function. */
#define LSPO_STARPU(call) do {                                               \
	int lspo_rc_ = (call);                                               \
	if (lspo_rc_ < 0)                                                    \
		LSPO_FAIL(lspo_status_from_starpu(lspo_rc_), "%s failed: %s", \
		          #call, lspo_strerror(lspo_status_from_starpu(lspo_rc_))); \
	} while (0)

/* -ENODEV -> LSPO_ENODEV, -ENOMEM -> LSPO_ENOMEM, other negatives -> LSPO_ESTARPU. */
int lspo_status_from_starpu(int rc);

#endif

/* SPDX-License-Identifier: MIT */
/*
 * uw_log.h - logging through a callback the program supplies. The libraries never print and keep
 * no global logger: whoever needs to log is handed a uw_logger.
 */
#ifndef UW_LOG_H
#define UW_LOG_H

enum uw_log_level { UW_LOG_ERR = 0, UW_LOG_WARN = 1, UW_LOG_INFO = 2, UW_LOG_DEBUG = 3 };

/* Receives one complete line (no trailing newline). Called on the thread that logs. */
typedef void (*uw_log_fn)(void *user, int level, const char *line);

typedef struct uw_logger {
	uw_log_fn fn; /* NULL: discard */
	void *user;
	int level; /* lines above this level are not even formatted */
} uw_logger;

/* Formats and hands one line to lg->fn; lg may be NULL. Lines longer than 1 KiB are cut. */
__attribute__((format(printf, 3, 4))) void uw_logf(const uw_logger *lg, int level, const char *fmt,
                                                   ...);

#endif /* UW_LOG_H */

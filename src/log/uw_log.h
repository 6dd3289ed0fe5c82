/* SPDX-License-Identifier: MIT */
/*
 * uw_log.h - logging through a callback the program supplies. The libraries never print and keep
 * no global logger: whoever needs to log is handed a uw_logger.
 */
#ifndef UW_LOG_H
#define UW_LOG_H

#include <stddef.h>

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

/* Bytes that came from a peer (busids, paths, descriptor strings) never reach a log line or a
 * terminal raw. uw_escape writes the first n bytes of s (fewer if a NUL comes first) to dst as
 * printable text: bytes below 0x20, 0x7f, the backslash, every byte that is not part of valid
 * UTF-8, and the UTF-8 encodings of the C1 controls U+0080..U+009F become \xNN (one per byte);
 * the rest is copied. dst (cap > 0) is always NUL-terminated; what does not fit is cut between
 * characters, never inside an escape. Returns dst, so it can be an argument to a printf. */
#define UW_ESCAPE_SIZE(n) (4 * (size_t)(n) + 1)
const char *uw_escape(char *dst, size_t cap, const char *s, size_t n);

/* Length (2..4) of the valid, non-overlong UTF-8 sequence of a character >= U+0080 that starts
 * at p (n bytes available), or 0 if there is none. */
size_t uw_utf8_seq_len(const unsigned char *p, size_t n);

#endif /* UW_LOG_H */

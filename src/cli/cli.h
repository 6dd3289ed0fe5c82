/* SPDX-License-Identifier: MIT */
/* cli.h - what the subcommands of the usbwire program share. */
#ifndef UW_CLI_H
#define UW_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "uw_log.h"

#define UW_VERSION "0.1.0"

struct uw_cmd_entry {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
};

/* Subcommands, one file each. Each returns the process exit status (0 ok, 1 failure, 2 usage). */
int cmd_serve(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_bench(int argc, char **argv);

/* A logger writing "TIME LEVEL: line" to stderr; level is the most verbose level shown. */
void cli_logger(uw_logger *lg, int level);
/* Prints "usbwire: " + message to stderr. */
__attribute__((format(printf, 1, 2))) void cli_err(const char *fmt, ...);
/* Parses "HOST[:PORT]" for -r; prints an error and returns false if it is not valid. */
bool cli_host_port(const char *arg, char *host, size_t cap, uint16_t *port);
/* Writes s as a JSON string literal (quotes and escapes) to stdout. */
void cli_json_str(const char *s);

#endif /* UW_CLI_H */

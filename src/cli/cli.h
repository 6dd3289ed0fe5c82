/* SPDX-License-Identifier: MIT */
/* cli.h - what the subcommands of the usbwire program share. */
#ifndef UW_CLI_H
#define UW_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "uw_addr.h"
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
int cmd_attach(int argc, char **argv);
int cmd_port(int argc, char **argv);
int cmd_detach(int argc, char **argv);
int cmd_info(int argc, char **argv);

/* vhci-hcd helpers (cmd_port.c): the sysfs directory and the record directory (overridden by
 * USBWIRE_VHCI_SYSFS and USBWIRE_VHCI_RECORD_DIR, for tests); whether vhci-hcd is loaded (if
 * not, prints how to load it); names of a port's status and hub. */
const char *cli_vhci_root(void);
const char *cli_vhci_record_dir(void);
bool cli_vhci_check_loaded(const char *cmd);
const char *cli_vdev_status_name(uint32_t status);
const char *cli_vhci_hub_name(uint8_t hub);

/* A logger writing "TIME LEVEL: line" to stderr; level is the most verbose level shown. */
void cli_logger(uw_logger *lg, int level);
/* Prints "usbwire: " + message to stderr. */
__attribute__((format(printf, 1, 2))) void cli_err(const char *fmt, ...);
/* Parses "HOST[:PORT]" for -r; prints an error and returns false if it is not valid. */
/* Parses a client address (uw_addr.h: HOST[:PORT], [IPV6]:PORT, tcp:, unix:, vsock:,
 * fc-vsock:); prints why and returns false when it is not one. */
bool cli_addr(const char *arg, uw_addr *a);
/* The USB-IF name of a class code ("Mass Storage"), or NULL for 0 and unknown codes. */
const char *cli_class_name(uint8_t c);
/* Writes s as a JSON string literal (quotes and escapes) to stdout. */
void cli_json_str(const char *s);

#endif /* UW_CLI_H */

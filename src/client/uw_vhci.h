/* SPDX-License-Identifier: MIT */
/*
 * uw_vhci.h - the client side of the Linux vhci-hcd driver through sysfs (docs/protocol.md
 * §7.1): read the port table from the status files, choose a free port of the right speed,
 * hand a connected socket to the kernel (attach), give a port back (detach), and keep the
 * per-port record files that `usbip port` reads (/var/run/vhci_hcd/portN: "HOST PORT BUSID\n").
 *
 * Every function takes the sysfs directory of controller 0 (UW_VHCI_SYSFS on a real system) or
 * the record directory (UW_VHCI_RECORD_DIR) as a parameter, so the tests run against a fake
 * tree in a temporary directory. The status text is untrusted input: it is parsed token by
 * token with bounds checks, lines that do not parse are skipped and counted, never guessed.
 *
 * Nothing here prints or keeps global state; functions are reentrant. Errors are negative uw_err
 * values; where a system call failed, *sys_errno (optional) receives its errno so the caller can
 * say exactly what the kernel refused. Out-parameters are written only on success.
 */
#ifndef UW_VHCI_H
#define UW_VHCI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uw_error.h"
#include "uw_limits.h"

#define UW_VHCI_SYSFS      "/sys/devices/platform/vhci_hcd.0"
#define UW_VHCI_RECORD_DIR "/var/run/vhci_hcd"

/* Kconfig maxima: 128 controllers x 2 root hubs x 15 ports. */
#define UW_VHCI_MAX_CONTROLLERS 128u
#define UW_VHCI_MAX_PORTS       3840u
/* Bytes read from one status or record file at most (a 15-port controller needs ~1.3 KiB). */
#define UW_VHCI_FILE_MAX        65536u
/* Record file fields: host name or address, port (service) and busid, each without blanks. */
#define UW_VHCI_HOST_SIZE       256u
#define UW_VHCI_SERV_SIZE       32u

/* Which root hub a port belongs to. */
enum uw_vhci_hub {
	UW_VHCI_HUB_UNKNOWN = 0, /* a status format without a hub column (old kernels) */
	UW_VHCI_HUB_HS = 1,      /* USB 2 root hub: speeds 1..4 */
	UW_VHCI_HUB_SS = 2,      /* USB 3 root hub: speeds 5, 6 */
};

/* Port status (include/uapi/linux/usbip.h VDEV_ST_*). */
enum uw_vdev_status {
	UW_VDEV_NULL = 4,        /* free */
	UW_VDEV_NOTASSIGNED = 5, /* attached, not yet addressed */
	UW_VDEV_USED = 6,        /* in use */
	UW_VDEV_ERROR = 7,       /* unusable */
};

/* One line of a status file. */
typedef struct uw_vhci_port {
	uint32_t port;   /* global port number: what attach/detach and `usbip port` use */
	uint8_t hub;     /* enum uw_vhci_hub */
	uint32_t status; /* enum uw_vdev_status (other values are kept as read) */
	uint32_t speed;  /* enum uw_speed; 0 when free */
	uint32_t devid;  /* (busnum << 16) | devnum of the remote device; 0 when free */
	char local_busid[UW_BUSID_SIZE]; /* the device on the vhci bus, "0-0" when free */
	uint32_t controller; /* vhci_hcd.N: which status file it came from (uw_vhci_read) */
} uw_vhci_port;

/* The port table of every controller. */
typedef struct uw_vhci_status {
	uint32_t nports;     /* the nports file, or 0 if absent/unreadable */
	size_t n;            /* ports parsed */
	size_t skipped;      /* lines that did not parse (malformed, duplicate port, over limit) */
	uw_vhci_port *ports; /* n entries in file order; owned, freed by uw_vhci_status_fini() */
} uw_vhci_status;

/**
 * uw_vhci_parse_status() - parse the text of one status file (len bytes, need not be
 * NUL-terminated) and append its ports to out[*n .. cap). Accepted lines: the current format
 * "hs  0000 004 000 00000000 000000 0-0" (hub, port, status, speed, hex devid, sockfd, local
 * busid; blanks of any width; the fields after the status may be missing), and the older one
 * without the hub column ("000 004 000 00000000 ..."). Header lines ("hub port ...", "prt
 * sta ...") and blank lines are ignored. A line is skipped and counted in *skipped when a field
 * is not a number in range (port >= UW_VHCI_MAX_PORTS, status > 99, speed > 99), the hub tag is
 * unknown, the busid is too long, the port number was already seen in out[0 .. *n), or out is
 * full. Thread-safe. Returns UW_OK (also when lines were skipped), UW_E_INVAL for NULL pointers.
 */
int uw_vhci_parse_status(const char *text, size_t len, uw_vhci_port *out, size_t cap, size_t *n,
                         size_t *skipped);

/**
 * uw_vhci_present() - whether root looks like a loaded vhci-hcd (root/attach exists).
 */
bool uw_vhci_present(const char *root);

/**
 * uw_vhci_read() - read root/nports and the status files root/status, root/status.1, ... (until
 * one is missing, at most UW_VHCI_MAX_CONTROLLERS) into *st, which the caller releases with
 * uw_vhci_status_fini(). Returns UW_OK; UW_E_NODEV if root/status does not exist (vhci-hcd not
 * loaded); UW_E_ACCESS; UW_E_IO; UW_E_NOMEM. *sys_errno (may be NULL) gets the errno of a failed
 * system call.
 */
int uw_vhci_read(const char *root, uw_vhci_status *st, int *sys_errno);

/** uw_vhci_status_fini() - free what uw_vhci_read() allocated; st may be read again after. */
void uw_vhci_status_fini(uw_vhci_status *st);

/** uw_vhci_find() - the entry of port number port, or NULL. */
const uw_vhci_port *uw_vhci_find(const uw_vhci_status *st, uint32_t port);

/**
 * uw_vhci_hub_fits() - whether a device of speed (enum uw_speed) belongs on hub: speed >= 5 on
 * the SuperSpeed hub, 1..4 on the USB 2 hub (what the kernel does with the attach string); a
 * port of unknown hub fits any speed but 0.
 */
bool uw_vhci_hub_fits(uint8_t hub, uint32_t speed);

/**
 * uw_vhci_free_ports() - the free ports (status UW_VDEV_NULL) whose hub fits speed, ascending,
 * at most cap of them into out. Returns how many there are in total (may exceed cap).
 */
size_t uw_vhci_free_ports(const uw_vhci_status *st, uint32_t speed, uint32_t *out, size_t cap);

/**
 * uw_vhci_spread() - reorder ports[0 .. n) (port numbers, e.g. from uw_vhci_free_ports) so that
 * ports of controllers with fewer ports in use come first; otherwise the order is kept. Each
 * vhci controller serialises its devices' configuration changes (one bandwidth lock per host
 * controller): spreading attachments keeps one slow device from holding up the others, and lets
 * a device that is itself imported through vhci be exported and imported again on this machine
 * (on the same controller its SET_CONFIGURATION would wait for the lock the importing side
 * holds: a deadlock).
 */
void uw_vhci_spread(const uw_vhci_status *st, uint32_t *ports, size_t n);

/** uw_vhci_count_fitting() - how many ports fit speed (free or not): for error messages. */
size_t uw_vhci_count_fitting(const uw_vhci_status *st, uint32_t speed);

/**
 * uw_vhci_attach() - write "port sockfd devid speed" to root/attach: the kernel takes its own
 * reference to the socket and starts enumerating the device. The caller may close sockfd after.
 * Returns UW_OK; UW_E_BUSY (EBUSY: port taken meanwhile, try another); UW_E_INVAL (EINVAL: a
 * value the kernel refuses, e.g. the speed, or not a stream socket); UW_E_STATE (EAGAIN:
 * controller not ready); UW_E_NODEV (no attach file: vhci-hcd not loaded); UW_E_ACCESS
 * (EACCES/EPERM: not root); UW_E_IO otherwise. *sys_errno (may be NULL) gets the errno.
 */
int uw_vhci_attach(const char *root, uint32_t port, int sockfd, uint32_t devid, uint32_t speed,
                   int *sys_errno);

/**
 * uw_vhci_detach() - write port to root/detach: the kernel shuts the connection down and frees
 * the port. Returns UW_OK, UW_E_INVAL (EINVAL: no such port or not in use), UW_E_NODEV,
 * UW_E_ACCESS, UW_E_IO; *sys_errno as above.
 */
int uw_vhci_detach(const char *root, uint32_t port, int *sys_errno);

/* The remote location of an imported port, as `usbip attach` records it. */
typedef struct uw_vhci_record {
	char host[UW_VHCI_HOST_SIZE];
	char serv[UW_VHCI_SERV_SIZE]; /* the TCP port, as text ("3240") */
	char busid[UW_BUSID_SIZE];
} uw_vhci_record;

/**
 * uw_vhci_record_write() - create dir (mode 0700) if needed and write dir/port<port> containing
 * "HOST SERV BUSID\n" (the stock tools' format), replacing an old one atomically (temporary file
 * + rename). host, serv and busid must be non-empty, without blanks or control characters, and
 * fit their uw_vhci_record fields. Returns UW_OK, UW_E_INVAL, UW_E_ACCESS, UW_E_IO.
 */
int uw_vhci_record_write(const char *dir, uint32_t port, const char *host, const char *serv,
                         const char *busid, int *sys_errno);

/**
 * uw_vhci_record_read() - read dir/port<port>: three blank-separated fields on the first line,
 * each within its size. Returns UW_OK and fills *out, UW_E_NOTFOUND (no file), UW_E_PROTO (not
 * three fields that fit), UW_E_ACCESS, UW_E_IO.
 */
int uw_vhci_record_read(const char *dir, uint32_t port, uw_vhci_record *out);

/**
 * uw_vhci_record_remove() - delete dir/port<port> and then dir itself if it became empty (as
 * `usbip detach` does). Returns UW_OK (also when there was no file), UW_E_ACCESS, UW_E_IO.
 */
int uw_vhci_record_remove(const char *dir, uint32_t port);

#endif /* UW_VHCI_H */

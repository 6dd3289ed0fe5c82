/* SPDX-License-Identifier: MIT */
/*
 * uw_scsi.h - a SCSI block logical unit (SPC-4 / SBC-3 subset) over a file descriptor.
 *
 * Transport-independent: a transport (USB Bulk-Only in emu_storage.c) hands it one CDB at a time
 * and moves the data stage; this module decides what the command means, produces small responses
 * (INQUIRY, MODE SENSE, ...), checks ranges and keeps the sense data. Every CDB byte is untrusted;
 * nothing here reads past cdb_len or allocates for a value in a CDB.
 *
 * A command runs in three steps, so that a transport can move medium data zero-copy and off its
 * event loop:
 *   1. uw_scsi_begin()  - decode and check the CDB (loop thread). Says the direction and length of
 *                         the data stage the device intends, and either holds the response
 *                         (small IN commands) or names the medium range (READ/WRITE).
 *   2. uw_scsi_pread()/uw_scsi_pwrite()/uw_scsi_sync() - the medium I/O of the data stage, any
 *                         number of calls at byte offsets inside the range. They touch only the
 *                         file descriptor, so they may run on a worker thread.
 *   3. uw_scsi_end()    - the final status; sets sense data on an I/O error (loop thread).
 * uw_scsi_exec() does all three at once on caller buffers (tests, fuzzing, simple transports).
 *
 * Threading: a uw_scsi_lun is used by one thread at a time, except that uw_scsi_pread(),
 * uw_scsi_pwrite() and uw_scsi_sync() may run on another thread concurrently with anything but
 * uw_scsi_lun_free().
 */
#ifndef UW_SCSI_H
#define UW_SCSI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UW_SCSI_BLOCK      512u /* logical block size */
#define UW_SCSI_CDB_MAX    16u  /* longest CDB (and the CBWCB field of BOT) */
#define UW_SCSI_SENSE_LEN  18u  /* fixed-format sense data */
#define UW_SCSI_RESP_MAX   256u /* largest non-medium response this LUN produces */
#define UW_SCSI_SERIAL_MAX 32u  /* unit serial number characters */

/* SAM status codes. */
enum uw_scsi_status {
	UW_SCSI_GOOD = 0x00,
	UW_SCSI_CHECK_CONDITION = 0x02,
};

/* Sense keys (SPC-4 table 48). */
enum uw_scsi_sense_key {
	UW_SK_NO_SENSE = 0x0,
	UW_SK_NOT_READY = 0x2,
	UW_SK_MEDIUM_ERROR = 0x3,
	UW_SK_ILLEGAL_REQUEST = 0x5,
	UW_SK_UNIT_ATTENTION = 0x6,
	UW_SK_DATA_PROTECT = 0x7,
	UW_SK_ABORTED_COMMAND = 0xb,
};

/* Additional sense codes (ASC << 8 | ASCQ) this LUN reports. */
enum uw_scsi_asc {
	UW_ASC_NONE = 0x0000,
	UW_ASC_WRITE_ERROR = 0x0c00,
	UW_ASC_UNRECOVERED_READ_ERROR = 0x1100,
	UW_ASC_INVALID_OPCODE = 0x2000,
	UW_ASC_LBA_OUT_OF_RANGE = 0x2100,
	UW_ASC_INVALID_FIELD_IN_CDB = 0x2400,
	UW_ASC_LUN_NOT_SUPPORTED = 0x2500,
	UW_ASC_WRITE_PROTECTED = 0x2700,
	UW_ASC_SAVING_NOT_SUPPORTED = 0x3900,
	UW_ASC_MEDIUM_NOT_PRESENT = 0x3a00,
	UW_ASC_REMOVAL_PREVENTED = 0x5302,
};

/* Direction of a command's data stage, seen from the host. */
enum uw_scsi_dir {
	UW_SCSI_DIR_NONE = 0,
	UW_SCSI_DIR_IN = 1,  /* device to host */
	UW_SCSI_DIR_OUT = 2, /* host to device */
};

/* Where the data stage goes. */
enum uw_scsi_data {
	UW_SCSI_DATA_NONE = 0,    /* no data stage */
	UW_SCSI_DATA_RESP = 1,    /* IN: the first len bytes of cmd.resp */
	UW_SCSI_DATA_MEDIUM = 2,  /* IN or OUT: bytes [offset, offset + len) of the medium */
	UW_SCSI_DATA_DISCARD = 3, /* OUT: accepted and ignored (MODE SELECT parameters) */
};

/* One command, in caller storage. Filled by uw_scsi_begin(); read-only to the caller except
 * through uw_scsi_end(). */
typedef struct uw_scsi_cmd {
	uint8_t opcode;
	uint8_t status;  /* enum uw_scsi_status as known so far */
	uint8_t dir;     /* enum uw_scsi_dir */
	uint8_t data;    /* enum uw_scsi_data */
	bool sync;       /* flush the medium before the status (SYNCHRONIZE CACHE, FUA) */
	bool write;      /* the data stage writes the medium */
	uint64_t len;    /* bytes of the data stage the device intends (0 when dir is NONE) */
	uint64_t offset; /* DATA_MEDIUM: medium byte offset of the data stage */
	uint8_t resp[UW_SCSI_RESP_MAX]; /* DATA_RESP: the response */
} uw_scsi_cmd;

/* How to make a LUN. */
typedef struct uw_scsi_lun_cfg {
	int fd;          /* the medium; not owned (the caller closes it after uw_scsi_lun_free()) */
	uint64_t blocks; /* capacity in UW_SCSI_BLOCK blocks, >= 1 */
	bool read_only;
	const char *serial;  /* unit serial number (VPD 0x80), printable ASCII, <= 32 chars */
	const char *product; /* INQUIRY product id, <= 16 chars (NULL: "Mass Storage") */
} uw_scsi_lun_cfg;

typedef struct uw_scsi_lun uw_scsi_lun;

/**
 * uw_scsi_lun_new() - a LUN over cfg->fd. Returns 0 and *out (free with uw_scsi_lun_free()),
 * UW_E_INVAL for a bad cfg (blocks 0 or beyond 2^64 / 512 - 1, serial or product too long or not
 * printable) or UW_E_NOMEM.
 */
int uw_scsi_lun_new(const uw_scsi_lun_cfg *cfg, uw_scsi_lun **out);
/** uw_scsi_lun_free() - frees lun (NULL is ignored); does not close or flush the fd. */
void uw_scsi_lun_free(uw_scsi_lun *lun);

/** uw_scsi_lun_blocks() - the capacity in blocks. */
uint64_t uw_scsi_lun_blocks(const uw_scsi_lun *lun);

/**
 * uw_scsi_lun_reset() - power-on state: no pending sense, medium loaded, removal allowed.
 * For a transport's reset or a new session.
 */
void uw_scsi_lun_reset(uw_scsi_lun *lun);

/**
 * uw_scsi_begin() - decode cdb (cdb_len bytes, only those are read) and start the command in cmd.
 * On a CDB the LUN rejects, cmd->status is CHECK CONDITION, the sense is set and there is no data
 * stage. Commands without medium I/O are complete when it returns (their response is in
 * cmd->resp); REQUEST SENSE returns and clears the pending sense here.
 */
void uw_scsi_begin(uw_scsi_lun *lun, const uint8_t *cdb, size_t cdb_len, uw_scsi_cmd *cmd);

/**
 * uw_scsi_pread() / uw_scsi_pwrite() - medium I/O of a DATA_MEDIUM data stage: n bytes at medium
 * byte offset off (the caller keeps off + n within [cmd->offset, cmd->offset + cmd->len)).
 * Blocking; retried on EINTR and short counts. Returns 0 or a negative errno (-EIO when the
 * medium ends early). Thread-safe (see above).
 */
int uw_scsi_pread(const uw_scsi_lun *lun, uint64_t off, void *buf, size_t n);
int uw_scsi_pwrite(const uw_scsi_lun *lun, uint64_t off, const void *buf, size_t n);
/** uw_scsi_sync() - fdatasync the medium. Returns 0 or a negative errno. Thread-safe. */
int uw_scsi_sync(const uw_scsi_lun *lun);

/**
 * uw_scsi_end() - finish cmd after its data stage. io_err is 0 or the first negative errno of
 * the command's medium I/O (including the flush when cmd->sync); it turns into MEDIUM ERROR sense.
 * Returns the final status (enum uw_scsi_status), also left in cmd->status.
 */
int uw_scsi_end(uw_scsi_lun *lun, uw_scsi_cmd *cmd, int io_err);

/**
 * uw_scsi_exec() - run one CDB synchronously. The data-out buffer holds out_len bytes (at most
 * cmd.len of them are used); up to in_cap bytes of data-in are written to in and *in_len says how
 * many (0 for non-IN commands). Returns the status (enum uw_scsi_status).
 */
int uw_scsi_exec(uw_scsi_lun *lun, const uint8_t *cdb, size_t cdb_len, const uint8_t *out,
                 size_t out_len, uint8_t *in, size_t in_cap, size_t *in_len);

/**
 * uw_scsi_sense() - the pending sense data in fixed format (UW_SCSI_SENSE_LEN bytes written to
 * out), without clearing it. Returns the sense key.
 */
int uw_scsi_sense(const uw_scsi_lun *lun, uint8_t out[UW_SCSI_SENSE_LEN]);

/** uw_scsi_set_sense() - make key/asc (enum uw_scsi_asc) the pending sense. */
void uw_scsi_set_sense(uw_scsi_lun *lun, uint8_t key, uint16_t asc);

#endif /* UW_SCSI_H */

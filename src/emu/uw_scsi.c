/* SPDX-License-Identifier: MIT */
/*
 * uw_scsi.c - a SCSI direct-access block device (SPC-4 / SBC-3 subset) over a file descriptor.
 * Written from the T10 specifications; see uw_scsi.h for the model.
 */
#include "uw_scsi.h"

#include <errno.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

#include "uw_error.h"

/* Operation codes (SPC-4, SBC-3; READ FORMAT CAPACITIES from MMC/UFI). */
enum {
	OP_TEST_UNIT_READY = 0x00,
	OP_REQUEST_SENSE = 0x03,
	OP_READ6 = 0x08,
	OP_WRITE6 = 0x0a,
	OP_INQUIRY = 0x12,
	OP_MODE_SELECT6 = 0x15,
	OP_MODE_SENSE6 = 0x1a,
	OP_START_STOP_UNIT = 0x1b,
	OP_PREVENT_ALLOW = 0x1e,
	OP_READ_FORMAT_CAPACITIES = 0x23,
	OP_READ_CAPACITY10 = 0x25,
	OP_READ10 = 0x28,
	OP_WRITE10 = 0x2a,
	OP_VERIFY10 = 0x2f,
	OP_SYNC_CACHE10 = 0x35,
	OP_MODE_SELECT10 = 0x55,
	OP_MODE_SENSE10 = 0x5a,
	OP_READ16 = 0x88,
	OP_WRITE16 = 0x8a,
	OP_VERIFY16 = 0x8f,
	OP_SYNC_CACHE16 = 0x91,
	OP_SERVICE_ACTION_IN16 = 0x9e,
	OP_REPORT_LUNS = 0xa0,
	OP_READ12 = 0xa8,
	OP_WRITE12 = 0xaa,
};

#define SAI_READ_CAPACITY16 0x10

/* Mode pages. */
#define MP_CACHING 0x08
#define MP_IEC     0x1c /* informational exceptions control */
#define MP_ALL     0x3f

/* VPD pages, in the order page 0x00 lists them. */
static const uint8_t vpd_pages[] = {0x00, 0x80, 0x83, 0xb0, 0xb1};

#define VENDOR_ID   "usbwire " /* 8 bytes, space padded */
#define PRODUCT_DEF "Mass Storage"
#define REVISION    "0.1 " /* 4 bytes */

/* Largest capacity: the byte size must fit an off_t. */
#define MAX_BLOCKS ((uint64_t)INT64_MAX / UW_SCSI_BLOCK)

struct uw_scsi_lun {
	int fd;
	uint64_t blocks;
	bool read_only;
	bool prevent; /* PREVENT ALLOW MEDIUM REMOVAL: removal prevented */
	bool ejected; /* START STOP UNIT with LOEJ: no medium until loaded again */
	uint8_t sense_key;
	uint16_t asc;
	char serial[UW_SCSI_SERIAL_MAX + 1];
	char product[17];
};

/* ---- Byte order helpers (CDBs and parameter data are big-endian) ------------------------- */

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static uint32_t be24(const uint8_t *p)
{
	return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const uint8_t *p)
{
	return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32(p + 4, (uint32_t)v);
}

/* Copies s into a field of n bytes, space padded (INQUIRY strings). */
static void put_padded(uint8_t *p, const char *s, size_t n)
{
	size_t l = strlen(s);
	memset(p, ' ', n);
	memcpy(p, s, l < n ? l : n);
}

static bool printable(const char *s, size_t max)
{
	size_t n = 0;
	for (; s[n]; n++) {
		if (n >= max || s[n] < 0x20 || s[n] > 0x7e)
			return false;
	}
	return true;
}

/* ---- LUN ------------------------------------------------------------------------------------ */

int uw_scsi_lun_new(const uw_scsi_lun_cfg *cfg, uw_scsi_lun **out)
{
	const char *product = cfg->product ? cfg->product : PRODUCT_DEF;
	const char *serial = cfg->serial ? cfg->serial : "";
	if (cfg->fd < 0 || cfg->blocks == 0 || cfg->blocks > MAX_BLOCKS ||
	    !printable(serial, UW_SCSI_SERIAL_MAX) || !printable(product, 16))
		return UW_E_INVAL;
	uw_scsi_lun *lun = calloc(1, sizeof *lun);
	if (!lun)
		return UW_E_NOMEM;
	lun->fd = cfg->fd;
	lun->blocks = cfg->blocks;
	lun->read_only = cfg->read_only;
	strcpy(lun->serial, serial);
	strcpy(lun->product, product);
	*out = lun;
	return UW_OK;
}

void uw_scsi_lun_free(uw_scsi_lun *lun)
{
	free(lun);
}

uint64_t uw_scsi_lun_blocks(const uw_scsi_lun *lun)
{
	return lun->blocks;
}

void uw_scsi_lun_reset(uw_scsi_lun *lun)
{
	lun->prevent = false;
	lun->ejected = false;
	lun->sense_key = UW_SK_NO_SENSE;
	lun->asc = UW_ASC_NONE;
}

void uw_scsi_set_sense(uw_scsi_lun *lun, uint8_t key, uint16_t asc)
{
	lun->sense_key = key;
	lun->asc = asc;
}

int uw_scsi_sense(const uw_scsi_lun *lun, uint8_t out[UW_SCSI_SENSE_LEN])
{
	memset(out, 0, UW_SCSI_SENSE_LEN);
	out[0] = 0x70; /* current error, fixed format, INFORMATION not valid */
	out[2] = lun->sense_key;
	out[7] = UW_SCSI_SENSE_LEN - 8; /* additional sense length */
	out[12] = (uint8_t)(lun->asc >> 8);
	out[13] = (uint8_t)lun->asc;
	return lun->sense_key;
}

/* ---- Command outcomes ---------------------------------------------------------------------- */

static void fail(uw_scsi_lun *lun, uw_scsi_cmd *cmd, uint8_t key, uint16_t asc)
{
	uw_scsi_set_sense(lun, key, asc);
	cmd->status = UW_SCSI_CHECK_CONDITION;
	cmd->dir = UW_SCSI_DIR_NONE;
	cmd->data = UW_SCSI_DATA_NONE;
	cmd->len = 0;
	cmd->sync = false;
	cmd->write = false;
}

static void invalid_field(uw_scsi_lun *lun, uw_scsi_cmd *cmd)
{
	fail(lun, cmd, UW_SK_ILLEGAL_REQUEST, UW_ASC_INVALID_FIELD_IN_CDB);
}

/* The response is the first avail bytes of cmd->resp, cut to the allocation length. */
static void respond(uw_scsi_cmd *cmd, size_t avail, uint32_t alloc)
{
	cmd->len = avail < alloc ? avail : alloc;
	if (cmd->len) {
		cmd->dir = UW_SCSI_DIR_IN;
		cmd->data = UW_SCSI_DATA_RESP;
	}
}

/* False (and NOT READY sense) when the medium has been ejected. */
static bool medium_present(uw_scsi_lun *lun, uw_scsi_cmd *cmd)
{
	if (!lun->ejected)
		return true;
	fail(lun, cmd, UW_SK_NOT_READY, UW_ASC_MEDIUM_NOT_PRESENT);
	return false;
}

/* Checks [lba, lba + n) against the capacity; n == 0 still needs lba inside the medium. */
static bool in_range(uw_scsi_lun *lun, uw_scsi_cmd *cmd, uint64_t lba, uint64_t n)
{
	if (lba < lun->blocks && n <= lun->blocks - lba)
		return true;
	fail(lun, cmd, UW_SK_ILLEGAL_REQUEST, UW_ASC_LBA_OUT_OF_RANGE);
	return false;
}

/* READ and WRITE of every size. */
static void rw(uw_scsi_lun *lun, uw_scsi_cmd *cmd, uint64_t lba, uint64_t n, bool write, bool fua)
{
	if (!medium_present(lun, cmd))
		return;
	if (write && lun->read_only) {
		fail(lun, cmd, UW_SK_DATA_PROTECT, UW_ASC_WRITE_PROTECTED);
		return;
	}
	if (!in_range(lun, cmd, lba, n) || n == 0)
		return;
	cmd->dir = write ? UW_SCSI_DIR_OUT : UW_SCSI_DIR_IN;
	cmd->data = UW_SCSI_DATA_MEDIUM;
	cmd->write = write;
	cmd->sync = write && fua;
	cmd->offset = lba * UW_SCSI_BLOCK; /* lba < blocks <= MAX_BLOCKS: no overflow */
	cmd->len = n * UW_SCSI_BLOCK;
}

/* ---- Commands without medium I/O ---------------------------------------------------------- */

static void inquiry(uw_scsi_lun *lun, uw_scsi_cmd *cmd, const uint8_t *c)
{
	bool evpd = c[1] & 0x01;
	uint8_t page = c[2];
	uint32_t alloc = be16(c + 3);
	uint8_t *r = cmd->resp;
	size_t n;

	if (c[1] & 0x02 || (!evpd && page != 0)) { /* CMDDT (obsolete) or a page without EVPD */
		invalid_field(lun, cmd);
		return;
	}
	if (!evpd) {
		r[0] = 0x00; /* peripheral qualifier 0: connected; device type 0: direct access */
		r[1] = 0x80; /* RMB: removable medium */
		r[2] = 0x06; /* VERSION: SPC-4 */
		r[3] = 0x02; /* RESPONSE DATA FORMAT 2 */
		r[4] = 36 - 5;
		put_padded(r + 8, VENDOR_ID, 8);
		put_padded(r + 16, lun->product, 16);
		put_padded(r + 32, REVISION, 4);
		respond(cmd, 36, alloc);
		return;
	}
	r[1] = page;
	switch (page) {
	case 0x00: /* supported VPD pages */
		memcpy(r + 4, vpd_pages, sizeof vpd_pages);
		n = 4 + sizeof vpd_pages;
		break;
	case 0x80: { /* unit serial number */
		size_t l = strlen(lun->serial);
		memcpy(r + 4, lun->serial, l);
		n = 4 + l;
		break;
	}
	case 0x83: { /* device identification: one T10 vendor ID designator for the LU */
		size_t l = strlen(lun->serial);
		r[4] = 0x02; /* PROTOCOL IDENTIFIER 0, CODE SET 2: ASCII */
		r[5] = 0x01; /* PIV 0, ASSOCIATION 0 (LU), DESIGNATOR TYPE 1: T10 vendor ID */
		r[7] = (uint8_t)(8 + l);
		put_padded(r + 8, VENDOR_ID, 8);
		memcpy(r + 16, lun->serial, l);
		n = 16 + l;
		break;
	}
	case 0xb0: /* block limits: no limits announced, optimal granularity 4 KiB */
		put_be16(r + 6, 4096 / UW_SCSI_BLOCK);
		n = 4 + 0x3c;
		break;
	case 0xb1:                       /* block device characteristics */
		put_be16(r + 4, 0x0001); /* MEDIUM ROTATION RATE: non-rotating */
		n = 4 + 0x3c;
		break;
	default:
		invalid_field(lun, cmd);
		return;
	}
	put_be16(r + 2, (uint16_t)(n - 4));
	respond(cmd, n, alloc);
}

static void request_sense(uw_scsi_lun *lun, uw_scsi_cmd *cmd, const uint8_t *c)
{
	/* Descriptor format (DESC = 1) is optional; fixed format is always acceptable to hosts. */
	uw_scsi_sense(lun, cmd->resp);
	uw_scsi_set_sense(lun, UW_SK_NO_SENSE, UW_ASC_NONE);
	respond(cmd, UW_SCSI_SENSE_LEN, c[4]);
}

static void mode_sense(uw_scsi_lun *lun, uw_scsi_cmd *cmd, const uint8_t *c, bool ten)
{
	bool dbd = c[1] & 0x08;
	bool llbaa = ten && (c[1] & 0x10);
	unsigned pc = c[2] >> 6, page = c[2] & 0x3f, sub = c[3];
	uint32_t alloc = ten ? be16(c + 7) : c[4];
	uint8_t *r = cmd->resp;
	size_t n = ten ? 8 : 4;

	if (pc == 3) { /* saved values */
		fail(lun, cmd, UW_SK_ILLEGAL_REQUEST, UW_ASC_SAVING_NOT_SUPPORTED);
		return;
	}
	if ((page != MP_CACHING && page != MP_IEC && page != MP_ALL) ||
	    (sub != 0 && !(page == MP_ALL && sub == 0xff))) {
		invalid_field(lun, cmd);
		return;
	}
	size_t bdlen = dbd ? 0 : llbaa ? 16 : 8;
	if (bdlen == 8) {
		put_be32(r + n, lun->blocks > 0xffffffffu ? 0xffffffffu : (uint32_t)lun->blocks);
		r[n + 5] = (uint8_t)(UW_SCSI_BLOCK >> 16);
		put_be16(r + n + 6, (uint16_t)UW_SCSI_BLOCK);
	} else if (bdlen == 16) {
		put_be64(r + n, lun->blocks);
		put_be32(r + n + 12, UW_SCSI_BLOCK);
	}
	n += bdlen;
	if (page == MP_CACHING || page == MP_ALL) {
		r[n] = MP_CACHING;
		r[n + 1] = 0x12;
		if (pc != 1)
			r[n + 2] = 0x04; /* WCE: writes are cached until SYNCHRONIZE CACHE */
		n += 20;
	}
	if (page == MP_IEC || page == MP_ALL) {
		r[n] = MP_IEC;
		r[n + 1] = 0x0a;
		if (pc != 1)
			r[n + 2] = 0x08; /* DEXCPT: no informational exceptions are reported */
		n += 12;
	}
	/* Device-specific parameter: WP when read-only; DPOFUA: FUA is honoured. */
	uint8_t dsp = (uint8_t)((lun->read_only ? 0x80 : 0) | 0x10);
	if (ten) {
		put_be16(r, (uint16_t)(n - 2));
		r[3] = dsp;
		r[4] = bdlen == 16 ? 0x01 : 0x00; /* LONGLBA */
		put_be16(r + 6, (uint16_t)bdlen);
	} else {
		r[0] = (uint8_t)(n - 1);
		r[2] = dsp;
		r[3] = (uint8_t)bdlen;
	}
	respond(cmd, n, alloc);
}

static void read_capacity10(uw_scsi_lun *lun, uw_scsi_cmd *cmd)
{
	uint64_t last = lun->blocks - 1;
	/* 0xffffffff tells the host to use READ CAPACITY(16). */
	put_be32(cmd->resp, last > 0xfffffffeu ? 0xffffffffu : (uint32_t)last);
	put_be32(cmd->resp + 4, UW_SCSI_BLOCK);
	respond(cmd, 8, 8);
}

static void service_action_in16(uw_scsi_lun *lun, uw_scsi_cmd *cmd, const uint8_t *c)
{
	if ((c[1] & 0x1f) != SAI_READ_CAPACITY16) {
		invalid_field(lun, cmd);
		return;
	}
	if (!medium_present(lun, cmd))
		return;
	put_be64(cmd->resp, lun->blocks - 1);
	put_be32(cmd->resp + 8, UW_SCSI_BLOCK);
	respond(cmd, 32, be32(c + 10));
}

static void read_format_capacities(uw_scsi_lun *lun, uw_scsi_cmd *cmd, const uint8_t *c)
{
	uint8_t *r = cmd->resp;
	r[3] = 8; /* capacity list length: one descriptor */
	put_be32(r + 4, lun->blocks > 0xffffffffu ? 0xffffffffu : (uint32_t)lun->blocks);
	r[8] = lun->ejected ? 0x03 : 0x02; /* no medium / formatted medium */
	r[9] = (uint8_t)(UW_SCSI_BLOCK >> 16);
	put_be16(r + 10, (uint16_t)UW_SCSI_BLOCK);
	respond(cmd, 12, be16(c + 7));
}

static void report_luns(uw_scsi_cmd *cmd, const uint8_t *c)
{
	put_be32(cmd->resp, 8); /* LUN list length: one LUN, number 0 */
	respond(cmd, 16, be32(c + 6));
}

static void start_stop_unit(uw_scsi_lun *lun, uw_scsi_cmd *cmd, const uint8_t *c)
{
	bool start = c[4] & 0x01, loej = c[4] & 0x02;
	if ((c[4] >> 4) != 0 || !loej) /* a power condition, or spin up/down: nothing to do */
		return;
	if (start) {
		lun->ejected = false;
	} else if (lun->prevent) {
		fail(lun, cmd, UW_SK_ILLEGAL_REQUEST, UW_ASC_REMOVAL_PREVENTED);
	} else {
		lun->ejected = true;
	}
}

static void verify(uw_scsi_lun *lun, uw_scsi_cmd *cmd, const uint8_t *c, uint64_t lba, uint64_t n)
{
	if ((c[1] >> 1) & 0x03) { /* BYTCHK: comparing data is not supported */
		invalid_field(lun, cmd);
		return;
	}
	if (medium_present(lun, cmd))
		in_range(lun, cmd, lba, n);
}

static void sync_cache(uw_scsi_lun *lun, uw_scsi_cmd *cmd, uint64_t lba, uint64_t n)
{
	if (medium_present(lun, cmd) && in_range(lun, cmd, lba, n))
		cmd->sync = true;
}

static void mode_select(uw_scsi_cmd *cmd, uint32_t len)
{
	/* Nothing is changeable; parameters are accepted and ignored. */
	if (len) {
		cmd->dir = UW_SCSI_DIR_OUT;
		cmd->data = UW_SCSI_DATA_DISCARD;
		cmd->len = len;
	}
}

/* CDB length of an opcode's group (SPC-4 4.2.5.1); 0: reserved or vendor specific. */
static size_t cdb_size(uint8_t op)
{
	static const uint8_t sizes[8] = {6, 10, 10, 0, 16, 12, 0, 0};
	return sizes[op >> 5];
}

void uw_scsi_begin(uw_scsi_lun *lun, const uint8_t *cdb, size_t cdb_len, uw_scsi_cmd *cmd)
{
	uint8_t c[UW_SCSI_CDB_MAX] = {0};

	memset(cmd, 0, sizeof *cmd);
	cmd->status = UW_SCSI_GOOD;
	if (cdb_len == 0) {
		invalid_field(lun, cmd);
		return;
	}
	memcpy(c, cdb, cdb_len < sizeof c ? cdb_len : sizeof c);
	cmd->opcode = c[0];
	/* Sense data describes the previous command; any command but REQUEST SENSE replaces it. */
	if (c[0] != OP_REQUEST_SENSE)
		uw_scsi_set_sense(lun, UW_SK_NO_SENSE, UW_ASC_NONE);

	size_t need = cdb_size(c[0]);
	if (need && cdb_len < need) {
		invalid_field(lun, cmd);
		return;
	}
	switch (c[0]) {
	case OP_TEST_UNIT_READY:
		medium_present(lun, cmd);
		break;
	case OP_REQUEST_SENSE:
		request_sense(lun, cmd, c);
		break;
	case OP_INQUIRY:
		inquiry(lun, cmd, c);
		break;
	case OP_READ6:
	case OP_WRITE6:
		/* A TRANSFER LENGTH of 0 means 256 blocks in the 6-byte commands. */
		rw(lun, cmd, be24(c + 1) & 0x1fffff, c[4] ? c[4] : 256, c[0] == OP_WRITE6, false);
		break;
	case OP_READ10:
	case OP_WRITE10:
		rw(lun, cmd, be32(c + 2), be16(c + 7), c[0] == OP_WRITE10, c[1] & 0x08);
		break;
	case OP_READ12:
	case OP_WRITE12:
		rw(lun, cmd, be32(c + 2), be32(c + 6), c[0] == OP_WRITE12, c[1] & 0x08);
		break;
	case OP_READ16:
	case OP_WRITE16:
		rw(lun, cmd, be64(c + 2), be32(c + 10), c[0] == OP_WRITE16, c[1] & 0x08);
		break;
	case OP_VERIFY10:
		verify(lun, cmd, c, be32(c + 2), be16(c + 7));
		break;
	case OP_VERIFY16:
		verify(lun, cmd, c, be64(c + 2), be32(c + 10));
		break;
	case OP_READ_CAPACITY10:
		if (medium_present(lun, cmd))
			read_capacity10(lun, cmd);
		break;
	case OP_SERVICE_ACTION_IN16:
		service_action_in16(lun, cmd, c);
		break;
	case OP_READ_FORMAT_CAPACITIES:
		read_format_capacities(lun, cmd, c);
		break;
	case OP_MODE_SENSE6:
		mode_sense(lun, cmd, c, false);
		break;
	case OP_MODE_SENSE10:
		mode_sense(lun, cmd, c, true);
		break;
	case OP_MODE_SELECT6:
		mode_select(cmd, c[4]);
		break;
	case OP_MODE_SELECT10:
		mode_select(cmd, be16(c + 7));
		break;
	case OP_SYNC_CACHE10:
		sync_cache(lun, cmd, be32(c + 2), 0);
		break;
	case OP_SYNC_CACHE16:
		sync_cache(lun, cmd, be64(c + 2), 0);
		break;
	case OP_PREVENT_ALLOW:
		lun->prevent = (c[4] & 0x03) != 0;
		break;
	case OP_START_STOP_UNIT:
		start_stop_unit(lun, cmd, c);
		break;
	case OP_REPORT_LUNS:
		report_luns(cmd, c);
		break;
	default:
		fail(lun, cmd, UW_SK_ILLEGAL_REQUEST, UW_ASC_INVALID_OPCODE);
		break;
	}
}

/* ---- Medium I/O ------------------------------------------------------------------------------ */

int uw_scsi_pread(const uw_scsi_lun *lun, uint64_t off, void *buf, size_t n)
{
	uint8_t *p = buf;
	while (n) {
		ssize_t r = pread(lun->fd, p, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO; /* the image shrank under us */
		p += r;
		off += (uint64_t)r;
		n -= (size_t)r;
	}
	return 0;
}

int uw_scsi_pwrite(const uw_scsi_lun *lun, uint64_t off, const void *buf, size_t n)
{
	const uint8_t *p = buf;
	while (n) {
		ssize_t r = pwrite(lun->fd, p, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO;
		p += r;
		off += (uint64_t)r;
		n -= (size_t)r;
	}
	return 0;
}

int uw_scsi_sync(const uw_scsi_lun *lun)
{
	while (fdatasync(lun->fd) != 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

int uw_scsi_end(uw_scsi_lun *lun, uw_scsi_cmd *cmd, int io_err)
{
	if (io_err && cmd->status == UW_SCSI_GOOD) {
		bool rd = cmd->data == UW_SCSI_DATA_MEDIUM && !cmd->write;
		fail(lun, cmd, UW_SK_MEDIUM_ERROR,
		     rd ? UW_ASC_UNRECOVERED_READ_ERROR : UW_ASC_WRITE_ERROR);
	}
	return cmd->status;
}

int uw_scsi_exec(uw_scsi_lun *lun, const uint8_t *cdb, size_t cdb_len, const uint8_t *out,
                 size_t out_len, uint8_t *in, size_t in_cap, size_t *in_len)
{
	uw_scsi_cmd cmd;
	int err = 0;
	size_t n = 0;

	uw_scsi_begin(lun, cdb, cdb_len, &cmd);
	if (cmd.dir == UW_SCSI_DIR_IN) {
		n = cmd.len < in_cap ? (size_t)cmd.len : in_cap;
		if (cmd.data == UW_SCSI_DATA_RESP && n)
			memcpy(in, cmd.resp, n);
		else if (cmd.data == UW_SCSI_DATA_MEDIUM && n)
			err = uw_scsi_pread(lun, cmd.offset, in, n);
	} else if (cmd.dir == UW_SCSI_DIR_OUT && cmd.data == UW_SCSI_DATA_MEDIUM) {
		size_t m = cmd.len < out_len ? (size_t)cmd.len : out_len;
		if (m)
			err = uw_scsi_pwrite(lun, cmd.offset, out, m);
	}
	if (!err && cmd.sync)
		err = uw_scsi_sync(lun);
	*in_len = err ? 0 : n;
	return uw_scsi_end(lun, &cmd, err);
}

/* SPDX-License-Identifier: MIT */
/*
 * test_scsi - the SCSI LUN of emulated storage (src/emu/uw_scsi.c) against temporary images:
 * every command's exact response and sense, range edges, read-only refusal, eject, a sparse
 * 2 TiB image, and data written through the LUN landing in the file.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "uw_error.h"
#include "uw_scsi.h"
#include "uw_test.h"

#define BLOCKS 1000u /* last LBA 999 = 0x3e7 */
#define SERIAL "0123456789ABCDEF"

/* A row: one CDB and what must come back. */
struct row {
	const char *name;
	uint8_t cdb[16];
	size_t cdb_len;
	size_t in_cap;       /* 0: 64 KiB */
	uint8_t status;      /* UW_SCSI_GOOD or UW_SCSI_CHECK_CONDITION */
	uint8_t key;         /* CHECK CONDITION: sense key */
	uint16_t asc;        /* and ASC/ASCQ */
	long want_len;       /* data-in length; -1: do not check */
	const uint8_t *want; /* expected data-in prefix */
	size_t want_n;
};

#define W(...)                                                                                     \
	.want = (const uint8_t[]){__VA_ARGS__}, .want_n = sizeof((const uint8_t[]){__VA_ARGS__})
#define CHECK(k, a) .status = UW_SCSI_CHECK_CONDITION, .key = (k), .asc = (a), .want_len = 0

static uint8_t in[1 << 17];

static int make_image(uint64_t bytes)
{
	char path[] = "/tmp/test_scsi.XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		return -1;
	unlink(path);
	if (ftruncate(fd, (off_t)bytes) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static uint8_t pattern(uint64_t off)
{
	return (uint8_t)(off * 13 + off / 512);
}

static void fill(int fd, size_t bytes)
{
	uint8_t *b = malloc(bytes);
	for (size_t i = 0; i < bytes; i++)
		b[i] = pattern(i);
	if (pwrite(fd, b, bytes, 0) != (ssize_t)bytes)
		abort();
	free(b);
}

static void run_rows(uw_scsi_lun *lun, const char *table, const struct row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct row *r = &rows[i];
		size_t len = 12345;
		size_t cap = r->in_cap ? r->in_cap : 65536;
		memset(in, 0xee, sizeof in);
		int st = uw_scsi_exec(lun, r->cdb, r->cdb_len, NULL, 0, in, cap, &len);
		uint8_t sense[UW_SCSI_SENSE_LEN];
		int key = uw_scsi_sense(lun, sense);
		uint16_t asc = (uint16_t)(sense[12] << 8 | sense[13]);
		bool ok = st == r->status;
		if (r->status == UW_SCSI_CHECK_CONDITION)
			ok = ok && key == r->key && asc == r->asc;
		else
			ok = ok && (key == UW_SK_NO_SENSE || r->cdb[0] == 0x03);
		if (r->want_len >= 0)
			ok = ok && len == (size_t)r->want_len;
		if (r->want_n)
			ok = ok && len >= r->want_n && memcmp(in, r->want, r->want_n) == 0;
		if (!t_ok(ok, "%s: %s", table, r->name)) {
			t_diag("status %d key %d asc %04x len %zu", st, key, asc, len);
			if (r->want_n && len >= r->want_n)
				t_hexdiff("data", in, r->want, r->want_n);
		}
	}
}

/* ---- Responses, ranges, sense ----------------------------------------------------------- */

static const struct row rw_rows[] = {
    {"TEST UNIT READY", {0x00}, 6, .want_len = 0},
    {"INQUIRY standard, 36 bytes",
     {0x12, 0, 0, 0, 36, 0},
     6,
     .want_len = 36,
     W(0x00, 0x80, 0x06, 0x02, 31, 0, 0, 0, 'u', 's', 'b', 'w', 'i', 'r', 'e', ' ', 'M', 'a', 's',
       's', ' ', 'S', 't', 'o', 'r', 'a', 'g', 'e', ' ', ' ', ' ', ' ', '0', '.', '1', ' ')},
    {"INQUIRY allocation length 96 still gives 36", {0x12, 0, 0, 0, 96, 0}, 6, .want_len = 36},
    {"INQUIRY allocation length 5 cuts",
     {0x12, 0, 0, 0, 5, 0},
     6,
     .want_len = 5,
     W(0x00, 0x80, 0x06, 0x02, 31)},
    {"INQUIRY allocation length 0: no data", {0x12, 0, 0, 0, 0, 0}, 6, .want_len = 0},
    {"INQUIRY VPD 0x00 supported pages",
     {0x12, 1, 0x00, 0, 255, 0},
     6,
     .want_len = 9,
     W(0x00, 0x00, 0x00, 0x05, 0x00, 0x80, 0x83, 0xb0, 0xb1)},
    {"INQUIRY VPD 0x80 unit serial",
     {0x12, 1, 0x80, 0, 255, 0},
     6,
     .want_len = 20,
     W(0x00, 0x80, 0x00, 16, '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'A', 'B', 'C', 'D',
       'E', 'F')},
    {"INQUIRY VPD 0x83 device identification",
     {0x12, 1, 0x83, 0, 255, 0},
     6,
     .want_len = 32,
     W(0x00, 0x83, 0x00, 28, 0x02, 0x01, 0x00, 24, 'u', 's', 'b', 'w', 'i', 'r', 'e', ' ', '0', '1',
       '2', '3', '4', '5', '6', '7', '8', '9', 'A', 'B', 'C', 'D', 'E', 'F')},
    {"INQUIRY VPD 0xb0 block limits",
     {0x12, 1, 0xb0, 0, 255, 0},
     6,
     .want_len = 64,
     W(0x00, 0xb0, 0x00, 0x3c, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 0)},
    {"INQUIRY VPD 0xb1 non-rotating",
     {0x12, 1, 0xb1, 0, 255, 0},
     6,
     .want_len = 64,
     W(0x00, 0xb1, 0x00, 0x3c, 0x00, 0x01, 0x00, 0x00)},
    {"INQUIRY VPD 0x80 allocation length 4 (16-bit field)",
     {0x12, 1, 0x80, 0, 4, 0},
     6,
     .want_len = 4,
     W(0x00, 0x80, 0x00, 16)},
    {"INQUIRY VPD 0xb2 (not listed)",
     {0x12, 1, 0xb2, 0, 255, 0},
     6,
     CHECK(UW_SK_ILLEGAL_REQUEST, UW_ASC_INVALID_FIELD_IN_CDB)},
    {"REQUEST SENSE returns it",
     {0x03, 0, 0, 0, 18, 0},
     6,
     .want_len = 18,
     W(0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0x00, 0, 0, 0, 0)},
    {"REQUEST SENSE again: cleared",
     {0x03, 0, 0, 0, 18, 0},
     6,
     .want_len = 18,
     W(0x70, 0, 0x00, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x00, 0x00, 0, 0, 0, 0)},
    {"INQUIRY page without EVPD",
     {0x12, 0, 0x80, 0, 255, 0},
     6,
     CHECK(UW_SK_ILLEGAL_REQUEST, UW_ASC_INVALID_FIELD_IN_CDB)},
    {"a good command replaces the sense", {0x00}, 6, .want_len = 0},
    {"REQUEST SENSE after it: NO SENSE",
     {0x03, 0, 0, 0, 252, 0},
     6,
     .want_len = 18,
     W(0x70, 0, 0x00)},
    {"REQUEST SENSE allocation length 8", {0x03, 0, 0, 0, 8, 0}, 6, .want_len = 8},
    {"READ CAPACITY(10)", {0x25}, 10, .want_len = 8, W(0, 0, 0x03, 0xe7, 0, 0, 0x02, 0x00)},
    {"READ CAPACITY(16)",
     {0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0},
     16,
     .want_len = 32,
     W(0, 0, 0, 0, 0, 0, 0x03, 0xe7, 0, 0, 0x02, 0x00, 0, 0, 0, 0)},
    {"READ CAPACITY(16) allocation length 12",
     {0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12},
     16,
     .want_len = 12},
    {"SERVICE ACTION IN(16) other action",
     {0x9e, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32},
     16,
     CHECK(UW_SK_ILLEGAL_REQUEST, UW_ASC_INVALID_FIELD_IN_CDB)},
    {"MODE SENSE(6) all pages",
     {0x1a, 0, 0x3f, 0, 255, 0},
     6,
     .want_len = 44,
     W(43, 0, 0x10, 8, 0, 0, 0x03, 0xe8, 0, 0, 0x02, 0x00, 0x08, 0x12, 0x04, 0, 0, 0, 0, 0, 0, 0, 0,
       0, 0, 0, 0, 0, 0, 0, 0, 0, 0x1c, 0x0a, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0)},
    {"MODE SENSE(6) all pages and subpages", {0x1a, 0, 0x3f, 0xff, 255, 0}, 6, .want_len = 44},
    {"MODE SENSE(6) caching, DBD",
     {0x1a, 0x08, 0x08, 0, 255, 0},
     6,
     .want_len = 24,
     W(23, 0, 0x10, 0, 0x08, 0x12, 0x04, 0)},
    {"MODE SENSE(6) changeable caching",
     {0x1a, 0x08, 0x48, 0, 255, 0},
     6,
     .want_len = 24,
     W(23, 0, 0x10, 0, 0x08, 0x12, 0x00, 0)},
    {"MODE SENSE(6) allocation length 4: header only",
     {0x1a, 0, 0x3f, 0, 4, 0},
     6,
     .want_len = 4,
     W(43, 0, 0x10, 8)},
    {"MODE SENSE(10) IEC page",
     {0x5a, 0, 0x1c, 0, 0, 0, 0, 0, 255, 0},
     10,
     .want_len = 28,
     W(0, 26, 0, 0x10, 0, 0, 0, 8, 0, 0, 0x03, 0xe8, 0, 0, 0x02, 0x00, 0x1c, 0x0a, 0x08)},
    {"MODE SENSE(10) LLBAA all pages",
     {0x5a, 0x10, 0x3f, 0, 0, 0, 0, 0, 255, 0},
     10,
     .want_len = 56,
     W(0, 54, 0, 0x10, 1, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0x03, 0xe8, 0, 0, 0, 0, 0, 0, 0x02, 0x00,
       0x08, 0x12, 0x04)},
    {"MODE SENSE saved values",
     {0x1a, 0, 0xff, 0, 255, 0},
     6,
     CHECK(UW_SK_ILLEGAL_REQUEST, UW_ASC_SAVING_NOT_SUPPORTED)},
    {"MODE SENSE unknown page",
     {0x1a, 0, 0x0a, 0, 255, 0},
     6,
     CHECK(UW_SK_ILLEGAL_REQUEST, UW_ASC_INVALID_FIELD_IN_CDB)},
    {"MODE SENSE unknown subpage",
     {0x1a, 0, 0x08, 0x01, 255, 0},
     6,
     CHECK(UW_SK_ILLEGAL_REQUEST, UW_ASC_INVALID_FIELD_IN_CDB)},
    {"MODE SELECT(6) without parameters", {0x15, 0x10, 0, 0, 0, 0}, 6, .want_len = 0},
    {"READ FORMAT CAPACITIES",
     {0x23, 0, 0, 0, 0, 0, 0, 0, 252, 0},
     10,
     .want_len = 12,
     W(0, 0, 0, 8, 0, 0, 0x03, 0xe8, 0x02, 0x00, 0x02, 0x00)},
    {"REPORT LUNS",
     {0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0},
     12,
     .want_len = 16,
     W(0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)},
    {"READ(10) last LBA", {0x28, 0, 0, 0, 0x03, 0xe7, 0, 0, 1, 0}, 10, .want_len = 512},
    {"READ(10) last LBA + 1",
     {0x28, 0, 0, 0, 0x03, 0xe8, 0, 0, 1, 0},
     10,
     CHECK(UW_SK_ILLEGAL_REQUEST, UW_ASC_LBA_OUT_OF_RANGE)},
    {"READ(10) across the end",
     {0x28, 0, 0, 0, 0x03, 0xe7, 0, 0, 2, 0},
     10,
     CHECK(UW_SK_ILLEGAL_REQUEST, UW_ASC_LBA_OUT_OF_RANGE)},
    {"READ(10) length 0", {0x28, 0, 0, 0, 0, 5, 0, 0, 0, 0}, 10, .want_len = 0},
    {"READ(10) length 0 past the end",
     {0x28, 0, 0, 0, 0x03, 0xe8, 0, 0, 0, 0},
     10,
     CHECK(UW_SK_ILLEGAL_REQUEST, UW_ASC_LBA_OUT_OF_RANGE)},
    {"READ(6) length 0 means 256 blocks",
     {0x08, 0, 0, 0, 0, 0},
     6,
     .in_cap = 1 << 17,
     .want_len = 256 * 512},
    {"READ(6) last LBA", {0x08, 0, 0x03, 0xe7, 1, 0}, 6, .want_len = 512},
    {"READ(6) last LBA + 1",
     {0x08, 0, 0x03, 0xe8, 1, 0},
     6,
     CHECK(UW_SK_ILLEGAL_REQUEST, UW_ASC_LBA_OUT_OF_RANGE)},
    {"READ(12) last 2 blocks", {0xa8, 0, 0, 0, 0x03, 0xe6, 0, 0, 0, 2, 0, 0}, 12, .want_len = 1024},
    {"READ(16) last LBA",
     {0x88, 0, 0, 0, 0, 0, 0, 0, 0x03, 0xe7, 0, 0, 0, 1, 0, 0},
     16,
     .want_len = 512},
    {"READ(16) LBA 2^64-1 (no wrap)",
     {0x88, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 2, 0, 0},
     16,
     CHECK(UW_SK_ILLEGAL_REQUEST, UW_ASC_LBA_OUT_OF_RANGE)},
    {"READ(16) length 2^32-1",
     {0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0},
     16,
     CHECK(UW_SK_ILLEGAL_REQUEST, UW_ASC_LBA_OUT_OF_RANGE)},
    {"READ(10) data-in cut to the buffer",
     {0x28, 0, 0, 0, 0, 0, 0, 0, 4, 0},
     10,
     .in_cap = 700,
     .want_len = 700},
    {"WRITE(10) last LBA + 1",
     {0x2a, 0, 0, 0, 0x03, 0xe8, 0, 0, 1, 0},
     10,
     CHECK(UW_SK_ILLEGAL_REQUEST, UW_ASC_LBA_OUT_OF_RANGE)},
    {"WRITE(6) last LBA + 1",
     {0x0a, 0, 0x03, 0xe8, 1, 0},
     6,
     CHECK(UW_SK_ILLEGAL_REQUEST, UW_ASC_LBA_OUT_OF_RANGE)},
    {"WRITE(12) across the end",
     {0xaa, 0, 0, 0, 0x03, 0xe7, 0, 0, 0, 2, 0, 0},
     12,
     CHECK(UW_SK_ILLEGAL_REQUEST, UW_ASC_LBA_OUT_OF_RANGE)},
    {"WRITE(16) last LBA + 1",
     {0x8a, 0, 0, 0, 0, 0, 0, 0, 0x03, 0xe8, 0, 0, 0, 1, 0, 0},
     16,
     CHECK(UW_SK_ILLEGAL_REQUEST, UW_ASC_LBA_OUT_OF_RANGE)},
    {"VERIFY(10) last LBA", {0x2f, 0, 0, 0, 0x03, 0xe7, 0, 0, 1, 0}, 10, .want_len = 0},
    {"VERIFY(10) last LBA + 1",
     {0x2f, 0, 0, 0, 0x03, 0xe8, 0, 0, 1, 0},
     10,
     CHECK(UW_SK_ILLEGAL_REQUEST, UW_ASC_LBA_OUT_OF_RANGE)},
    {"VERIFY(10) BYTCHK 1",
     {0x2f, 0x02, 0, 0, 0, 0, 0, 0, 1, 0},
     10,
     CHECK(UW_SK_ILLEGAL_REQUEST, UW_ASC_INVALID_FIELD_IN_CDB)},
    {"VERIFY(16) whole medium",
     {0x8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x03, 0xe8, 0, 0},
     16,
     .want_len = 0},
    {"VERIFY(16) one too many",
     {0x8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x03, 0xe9, 0, 0},
     16,
     CHECK(UW_SK_ILLEGAL_REQUEST, UW_ASC_LBA_OUT_OF_RANGE)},
    {"SYNCHRONIZE CACHE(10)", {0x35}, 10, .want_len = 0},
    {"SYNCHRONIZE CACHE(16) last LBA",
     {0x91, 0, 0, 0, 0, 0, 0, 0, 0x03, 0xe7, 0, 0, 0, 1, 0, 0},
     16,
     .want_len = 0},
    {"SYNCHRONIZE CACHE(10) past the end",
     {0x35, 0, 0, 0, 0x03, 0xe8, 0, 0, 0, 0},
     10,
     CHECK(UW_SK_ILLEGAL_REQUEST, UW_ASC_LBA_OUT_OF_RANGE)},
    {"unknown opcode 0xff", {0xff}, 6, CHECK(UW_SK_ILLEGAL_REQUEST, UW_ASC_INVALID_OPCODE)},
    {"FORMAT UNIT (not supported)", {0x04}, 6, CHECK(UW_SK_ILLEGAL_REQUEST, UW_ASC_INVALID_OPCODE)},
    {"ATA PASS-THROUGH(12)", {0xa1}, 12, CHECK(UW_SK_ILLEGAL_REQUEST, UW_ASC_INVALID_OPCODE)},
    {"unknown opcode with a 1-byte CDB",
     {0xc0},
     1,
     CHECK(UW_SK_ILLEGAL_REQUEST, UW_ASC_INVALID_OPCODE)},
    {"READ(10) truncated to 6 bytes",
     {0x28, 0, 0, 0, 0, 0},
     6,
     CHECK(UW_SK_ILLEGAL_REQUEST, UW_ASC_INVALID_FIELD_IN_CDB)},
    {"READ(16) truncated to 12 bytes",
     {0x88},
     12,
     CHECK(UW_SK_ILLEGAL_REQUEST, UW_ASC_INVALID_FIELD_IN_CDB)},
    {"empty CDB", {0}, 0, CHECK(UW_SK_ILLEGAL_REQUEST, UW_ASC_INVALID_FIELD_IN_CDB)},
    {"TEST UNIT READY in a 12-byte CDB (longer is fine)", {0x00}, 12, .want_len = 0},
};

static const struct row ro_rows[] = {
    {"WRITE(10) refused",
     {0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0},
     10,
     CHECK(UW_SK_DATA_PROTECT, UW_ASC_WRITE_PROTECTED)},
    {"WRITE(6) refused",
     {0x0a, 0, 0, 0, 1, 0},
     6,
     CHECK(UW_SK_DATA_PROTECT, UW_ASC_WRITE_PROTECTED)},
    {"WRITE(16) refused",
     {0x8a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0},
     16,
     CHECK(UW_SK_DATA_PROTECT, UW_ASC_WRITE_PROTECTED)},
    {"REQUEST SENSE: DATA PROTECT",
     {0x03, 0, 0, 0, 18, 0},
     6,
     .want_len = 18,
     W(0x70, 0, 0x07, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x27, 0x00)},
    {"MODE SENSE(6) WP bit", {0x1a, 0x08, 0x3f, 0, 255, 0}, 6, .want_len = 36, W(35, 0, 0x90, 0)},
    {"MODE SENSE(10) WP bit",
     {0x5a, 0x08, 0x3f, 0, 0, 0, 0, 0, 255, 0},
     10,
     .want_len = 40,
     W(0, 38, 0, 0x90, 0, 0, 0, 0)},
    {"READ(10) still works", {0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0}, 10, .want_len = 512},
    {"SYNCHRONIZE CACHE is harmless", {0x35}, 10, .want_len = 0},
};

static const struct row eject_rows[] = {
    {"PREVENT MEDIUM REMOVAL", {0x1e, 0, 0, 0, 1, 0}, 6, .want_len = 0},
    {"eject refused while prevented",
     {0x1b, 0, 0, 0, 0x02, 0},
     6,
     CHECK(UW_SK_ILLEGAL_REQUEST, UW_ASC_REMOVAL_PREVENTED)},
    {"ALLOW MEDIUM REMOVAL", {0x1e, 0, 0, 0, 0, 0}, 6, .want_len = 0},
    {"START STOP UNIT stop (no eject)", {0x1b, 0, 0, 0, 0x00, 0}, 6, .want_len = 0},
    {"TEST UNIT READY still ready", {0x00}, 6, .want_len = 0},
    {"eject", {0x1b, 0, 0, 0, 0x02, 0}, 6, .want_len = 0},
    {"TEST UNIT READY: no medium", {0x00}, 6, CHECK(UW_SK_NOT_READY, UW_ASC_MEDIUM_NOT_PRESENT)},
    {"READ(10): no medium",
     {0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0},
     10,
     CHECK(UW_SK_NOT_READY, UW_ASC_MEDIUM_NOT_PRESENT)},
    {"READ CAPACITY(10): no medium", {0x25}, 10, CHECK(UW_SK_NOT_READY, UW_ASC_MEDIUM_NOT_PRESENT)},
    {"READ FORMAT CAPACITIES: no medium descriptor",
     {0x23, 0, 0, 0, 0, 0, 0, 0, 12, 0},
     10,
     .want_len = 12,
     W(0, 0, 0, 8, 0, 0, 0x03, 0xe8, 0x03)},
    {"INQUIRY works without medium", {0x12, 0, 0, 0, 36, 0}, 6, .want_len = 36},
    {"load", {0x1b, 0, 0, 0, 0x03, 0}, 6, .want_len = 0},
    {"TEST UNIT READY: ready again", {0x00}, 6, .want_len = 0},
};

/* ---- Data through the LUN ------------------------------------------------------------- */

static void test_write_read_back(uw_scsi_lun *lun, int fd)
{
	struct {
		const char *name;
		uint8_t cdb[16];
		size_t cdb_len;
		uint64_t lba;
		uint32_t blocks;
	} rows[] = {
	    {"WRITE(6)", {0x0a, 0, 0, 10, 2, 0}, 6, 10, 2},
	    {"WRITE(10) with FUA", {0x2a, 0x08, 0, 0, 0, 20, 0, 0, 3, 0}, 10, 20, 3},
	    {"WRITE(12)", {0xaa, 0, 0, 0, 0, 30, 0, 0, 0, 1, 0, 0}, 12, 30, 1},
	    {"WRITE(16) last LBA",
	     {0x8a, 0, 0, 0, 0, 0, 0, 0, 0x03, 0xe7, 0, 0, 0, 1, 0, 0},
	     16,
	     999,
	     1},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		size_t n = rows[i].blocks * 512u, len = 1;
		uint8_t *data = malloc(n), *file = malloc(n);
		for (size_t k = 0; k < n; k++)
			data[k] = (uint8_t)(0xa5 ^ k ^ i);
		int st =
		    uw_scsi_exec(lun, rows[i].cdb, rows[i].cdb_len, data, n, in, sizeof in, &len);
		bool ok = st == UW_SCSI_GOOD && len == 0;
		ok = ok && pread(fd, file, n, (off_t)(rows[i].lba * 512)) == (ssize_t)n &&
		     memcmp(file, data, n) == 0;
		/* Read it back through READ(16). */
		uint8_t rd[16] = {0x88};
		for (int b = 0; b < 8; b++)
			rd[2 + b] = (uint8_t)(rows[i].lba >> (56 - 8 * b));
		rd[13] = (uint8_t)rows[i].blocks;
		st = uw_scsi_exec(lun, rd, 16, NULL, 0, in, sizeof in, &len);
		ok = ok && st == UW_SCSI_GOOD && len == n && memcmp(in, data, n) == 0;
		/* The blocks around are untouched. */
		uint8_t before[512];
		uint64_t prev = rows[i].lba ? rows[i].lba - 1 : 0;
		ok = ok && pread(fd, before, 512, (off_t)(prev * 512)) == 512;
		for (size_t k = 0; k < 512 && rows[i].lba; k++)
			ok = ok && before[k] == pattern(prev * 512 + k);
		t_ok(ok, "%s lands in the file and reads back", rows[i].name);
		free(data);
		free(file);
	}

	/* READ(10) of pattern data. */
	size_t len;
	uint8_t rd10[10] = {0x28, 0, 0, 0, 0x01, 0x00, 0, 0, 8, 0}; /* LBA 256, 8 blocks */
	int st = uw_scsi_exec(lun, rd10, 10, NULL, 0, in, sizeof in, &len);
	bool ok = st == UW_SCSI_GOOD && len == 4096;
	for (size_t k = 0; ok && k < 4096; k++)
		ok = in[k] == pattern(256 * 512 + k);
	t_ok(ok, "READ(10) returns the image's bytes");

	/* A short data-out buffer writes what there is. */
	uint8_t wr[10] = {0x2a, 0, 0, 0, 0, 40, 0, 0, 2, 0};
	uint8_t half[512];
	memset(half, 0x5a, sizeof half);
	st = uw_scsi_exec(lun, wr, 10, half, sizeof half, in, sizeof in, &len);
	uint8_t file[1024];
	ok = st == UW_SCSI_GOOD && pread(fd, file, 1024, 40 * 512) == 1024 &&
	     memcmp(file, half, 512) == 0 && file[512] == pattern(41 * 512);
	t_ok(ok, "WRITE(10) with less data-out writes only that");
}

/* The three-step API as a transport uses it: MODE SELECT data is discarded, medium errors turn
 * into sense. */
static void test_steps(uw_scsi_lun *lun)
{
	uw_scsi_cmd cmd;
	const uint8_t ms[6] = {0x15, 0x10, 0, 0, 12, 0};
	uw_scsi_begin(lun, ms, 6, &cmd);
	t_ok(cmd.status == UW_SCSI_GOOD && cmd.dir == UW_SCSI_DIR_OUT &&
	         cmd.data == UW_SCSI_DATA_DISCARD && cmd.len == 12 &&
	         uw_scsi_end(lun, &cmd, 0) == UW_SCSI_GOOD,
	     "MODE SELECT(6): 12 bytes out, discarded");

	const uint8_t ms10[10] = {0x55, 0x10, 0, 0, 0, 0, 0, 0x01, 0x00, 0};
	uw_scsi_begin(lun, ms10, 10, &cmd);
	t_ok(cmd.dir == UW_SCSI_DIR_OUT && cmd.len == 256, "MODE SELECT(10): 256 bytes out");

	const uint8_t rd[10] = {0x28, 0, 0, 0, 0, 7, 0, 0, 3, 0};
	uw_scsi_begin(lun, rd, 10, &cmd);
	t_ok(cmd.dir == UW_SCSI_DIR_IN && cmd.data == UW_SCSI_DATA_MEDIUM &&
	         cmd.offset == 7 * 512 && cmd.len == 3 * 512 && !cmd.write,
	     "READ(10) names its medium range");
	uint8_t sense[UW_SCSI_SENSE_LEN];
	int st = uw_scsi_end(lun, &cmd, -EIO);
	uw_scsi_sense(lun, sense);
	t_ok(st == UW_SCSI_CHECK_CONDITION && sense[2] == UW_SK_MEDIUM_ERROR && sense[12] == 0x11,
	     "a read I/O error: MEDIUM ERROR / UNRECOVERED READ ERROR");

	const uint8_t wr[10] = {0x2a, 0, 0, 0, 0, 7, 0, 0, 3, 0};
	uw_scsi_begin(lun, wr, 10, &cmd);
	t_ok(cmd.dir == UW_SCSI_DIR_OUT && cmd.write && !cmd.sync, "WRITE(10) without FUA");
	st = uw_scsi_end(lun, &cmd, -ENOSPC);
	uw_scsi_sense(lun, sense);
	t_ok(st == UW_SCSI_CHECK_CONDITION && sense[2] == UW_SK_MEDIUM_ERROR && sense[12] == 0x0c,
	     "a write I/O error: MEDIUM ERROR / WRITE ERROR");

	const uint8_t sc[10] = {0x35};
	uw_scsi_begin(lun, sc, 10, &cmd);
	t_ok(cmd.dir == UW_SCSI_DIR_NONE && cmd.sync && uw_scsi_sync(lun) == 0 &&
	         uw_scsi_end(lun, &cmd, 0) == UW_SCSI_GOOD,
	     "SYNCHRONIZE CACHE asks for the flush, which succeeds");

	uw_scsi_set_sense(lun, UW_SK_ILLEGAL_REQUEST, UW_ASC_INVALID_OPCODE);
	uw_scsi_lun_reset(lun);
	uw_scsi_sense(lun, sense);
	t_ok(sense[2] == 0 && sense[12] == 0, "reset clears the pending sense");
}

static void test_config(int fd)
{
	struct {
		const char *name;
		uw_scsi_lun_cfg cfg;
		int want;
	} rows[] = {
	    {"0 blocks", {.fd = fd, .blocks = 0}, UW_E_INVAL},
	    {"more blocks than an off_t holds", {.fd = fd, .blocks = UINT64_MAX / 256}, UW_E_INVAL},
	    {"bad fd", {.fd = -1, .blocks = 1}, UW_E_INVAL},
	    {"serial of 33 characters",
	     {.fd = fd, .blocks = 1, .serial = "0123456789ABCDEF0123456789ABCDEF0"},
	     UW_E_INVAL},
	    {"serial with a control character",
	     {.fd = fd, .blocks = 1, .serial = "ab\ncd"},
	     UW_E_INVAL},
	    {"product of 17 characters",
	     {.fd = fd, .blocks = 1, .product = "0123456789abcdefg"},
	     UW_E_INVAL},
	    {"1 block, no serial", {.fd = fd, .blocks = 1}, UW_OK},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		uw_scsi_lun *lun = NULL;
		int r = uw_scsi_lun_new(&rows[i].cfg, &lun);
		t_ok(r == rows[i].want, "lun_new: %s -> %s", rows[i].name, uw_err_name(r));
		uw_scsi_lun_free(lun);
	}
}

/* A sparse 2 TiB image: 2^32 blocks, last LBA 0xffffffff. */
static void test_big(void)
{
	const uint64_t blocks = 1ull << 32;
	int fd = make_image(blocks * 512);
	if (fd < 0) {
		t_ok(true, "2 TiB sparse image # SKIP the file system refuses it (%s)",
		     strerror(errno));
		return;
	}
	uw_scsi_lun_cfg cfg = {.fd = fd, .blocks = blocks, .serial = SERIAL};
	uw_scsi_lun *lun;
	t_ok(uw_scsi_lun_new(&cfg, &lun) == UW_OK, "LUN over a sparse 2 TiB image");
	const struct row rows[] = {
	    {"READ CAPACITY(10) says use 16",
	     {0x25},
	     10,
	     .want_len = 8,
	     W(0xff, 0xff, 0xff, 0xff, 0, 0, 0x02, 0x00)},
	    {"READ CAPACITY(16)",
	     {0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0},
	     16,
	     .want_len = 32,
	     W(0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x02, 0x00)},
	    {"READ(16) last LBA",
	     {0x88, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0, 0},
	     16,
	     .want_len = 512,
	     W(0, 0, 0, 0, 0, 0, 0, 0)},
	    {"READ(16) last LBA + 1",
	     {0x88, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0},
	     16,
	     CHECK(UW_SK_ILLEGAL_REQUEST, UW_ASC_LBA_OUT_OF_RANGE)},
	    {"READ(10) at 0xffffffff",
	     {0x28, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 1, 0},
	     10,
	     .want_len = 512},
	    {"MODE SENSE(6) block descriptor capped",
	     {0x1a, 0, 0x08, 0, 255, 0},
	     6,
	     .want_len = 32,
	     W(31, 0, 0x10, 8, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x02, 0x00)},
	    {"MODE SENSE(10) long descriptor exact",
	     {0x5a, 0x10, 0x08, 0, 0, 0, 0, 0, 255, 0},
	     10,
	     .want_len = 44,
	     W(0, 42, 0, 0x10, 1, 0, 0, 16, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x00)},
	};
	run_rows(lun, "2 TiB", rows, sizeof rows / sizeof rows[0]);

	/* Writing the last block at a 2 TiB offset lands there. */
	uint8_t wr[16] = {0x8a, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0, 0};
	uint8_t data[512], back[512];
	memset(data, 0x3c, sizeof data);
	size_t len;
	int st = uw_scsi_exec(lun, wr, 16, data, 512, in, sizeof in, &len);
	t_ok(st == UW_SCSI_GOOD && pread(fd, back, 512, (off_t)((blocks - 1) * 512)) == 512 &&
	         memcmp(back, data, 512) == 0,
	     "WRITE(16) of the last block of 2 TiB lands at offset 2^41 - 512");
	uw_scsi_lun_free(lun);
	close(fd);
}

int main(void)
{
	int fd = make_image((uint64_t)BLOCKS * 512);
	if (fd < 0) {
		t_ok(false, "temporary image: %s", strerror(errno));
		return t_done();
	}
	fill(fd, BLOCKS * 512);
	uw_scsi_lun_cfg cfg = {.fd = fd, .blocks = BLOCKS, .serial = SERIAL};
	uw_scsi_lun *lun;
	t_ok(uw_scsi_lun_new(&cfg, &lun) == UW_OK && uw_scsi_lun_blocks(lun) == BLOCKS,
	     "LUN over a 1000-block image");
	run_rows(lun, "rw", rw_rows, sizeof rw_rows / sizeof rw_rows[0]);
	test_write_read_back(lun, fd);
	test_steps(lun);
	run_rows(lun, "eject", eject_rows, sizeof eject_rows / sizeof eject_rows[0]);
	uw_scsi_lun_free(lun);

	cfg.read_only = true;
	t_ok(uw_scsi_lun_new(&cfg, &lun) == UW_OK, "read-only LUN");
	run_rows(lun, "ro", ro_rows, sizeof ro_rows / sizeof ro_rows[0]);
	uw_scsi_lun_free(lun);

	test_config(fd);
	close(fd);
	test_big();
	return t_done();
}

/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the SCSI LUN (src/emu/uw_scsi.c) on a small image in a memfd.
 *
 * Input: one byte of set-up (bit 0: read-only; bits 1-5: capacity 1..32 blocks), then commands:
 *   [flags] [cdb_len] [cdb_len bytes of CDB] [in_cap: 2 bytes, big-endian]
 * flags bit 0 runs the command through uw_scsi_exec(), otherwise through the three-step API as
 * a transport does. Data-out bytes are the rest of the input. The end of the input cuts
 * anything short (a truncated CDB is the fuzzer's business too).
 *
 * Oracles beyond "no crash": a medium range lies inside the medium; a response fits the response
 * buffer and the allocation length; CHECK CONDITION leaves sense data and moves no data; GOOD
 * leaves none (except REQUEST SENSE, which hands it over); every read returns what a shadow copy
 * of the image says, every write lands in the shadow too, and the file matches it at the end.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "uw_scsi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_BLOCKS 32u
#define IMG_MAX    (MAX_BLOCKS * UW_SCSI_BLOCK)
#define IN_MAX     65536u

static uint32_t rd16(const uint8_t *p)
{
	return (uint32_t)p[0] << 8 | p[1];
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The allocation length of the commands that have one; UINT64_MAX for the others. */
static uint64_t alloc_len(const uint8_t *c, size_t len)
{
	uint8_t p[UW_SCSI_CDB_MAX] = {0};
	memcpy(p, c, len < sizeof p ? len : sizeof p);
	switch (p[0]) {
	case 0x03: /* REQUEST SENSE */
	case 0x1a: /* MODE SENSE(6) */
		return p[4];
	case 0x12: /* INQUIRY */
		return rd16(p + 3);
	case 0x5a: /* MODE SENSE(10) */
	case 0x23: /* READ FORMAT CAPACITIES */
		return rd16(p + 7);
	case 0xa0: /* REPORT LUNS */
		return rd32(p + 6);
	case 0x9e: /* SERVICE ACTION IN(16) */
		return rd32(p + 10);
	case 0x25: /* READ CAPACITY(10) */
		return 8;
	default:
		return UINT64_MAX;
	}
}

static uint8_t shadow[IMG_MAX];
static uint8_t inbuf[IN_MAX];
static uint8_t check[IN_MAX];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	bool ro = data[0] & 1;
	uint64_t blocks = 1 + ((data[0] >> 1) & 0x1f);
	size_t img = (size_t)blocks * UW_SCSI_BLOCK;
	int fd = memfd_create("fuzz_scsi", MFD_CLOEXEC);
	if (fd < 0)
		abort();
	for (size_t i = 0; i < img; i++)
		shadow[i] = (uint8_t)(i * 7 + i / 512);
	if (pwrite(fd, shadow, img, 0) != (ssize_t)img)
		abort();
	uw_scsi_lun_cfg cfg = {
	    .fd = fd, .blocks = blocks, .read_only = ro, .serial = "0123456789AB"};
	uw_scsi_lun *lun;
	if (uw_scsi_lun_new(&cfg, &lun) != 0)
		abort();
	if (uw_scsi_lun_blocks(lun) != blocks)
		abort();

	size_t pos = 1;
	while (pos + 2 <= size) {
		uint8_t flags = data[pos++];
		size_t cdb_len = data[pos++] % 20;
		if (cdb_len > size - pos)
			cdb_len = size - pos;
		const uint8_t *cdb = data + pos;
		pos += cdb_len;
		uint32_t in_cap = 0;
		if (pos + 2 <= size) {
			in_cap = rd16(data + pos) + 1;
			pos += 2;
		}
		const uint8_t *out = data + pos;
		size_t out_len = size - pos;
		uint64_t alloc = cdb_len ? alloc_len(cdb, cdb_len) : UINT64_MAX;
		uint8_t sense[UW_SCSI_SENSE_LEN];

		if (flags & 1) {
			size_t in_len = 999999;
			int st =
			    uw_scsi_exec(lun, cdb, cdb_len, out, out_len, inbuf, in_cap, &in_len);
			if (in_len > in_cap || in_len > alloc)
				abort();
			if (st == UW_SCSI_CHECK_CONDITION) {
				if (uw_scsi_sense(lun, sense) == UW_SK_NO_SENSE || in_len != 0)
					abort();
			} else if (st != UW_SCSI_GOOD) {
				abort();
			}
			/* exec may have written: resynchronise the shadow from the file. */
			if (pread(fd, shadow, img, 0) != (ssize_t)img)
				abort();
			continue;
		}

		uw_scsi_cmd cmd;
		uw_scsi_begin(lun, cdb, cdb_len, &cmd);
		if (cmd.status == UW_SCSI_CHECK_CONDITION) {
			if (cmd.dir != UW_SCSI_DIR_NONE || cmd.len != 0 || cmd.sync ||
			    uw_scsi_sense(lun, sense) == UW_SK_NO_SENSE)
				abort();
			continue;
		}
		if (cmd.status != UW_SCSI_GOOD)
			abort();
		if ((cmd.dir == UW_SCSI_DIR_NONE) != (cmd.len == 0))
			abort();
		bool is_request_sense = cdb_len && cdb[0] == 0x03;
		if (!is_request_sense && uw_scsi_sense(lun, sense) != UW_SK_NO_SENSE)
			abort();
		int err = 0;
		switch (cmd.data) {
		case UW_SCSI_DATA_NONE:
			if (cmd.dir != UW_SCSI_DIR_NONE)
				abort();
			break;
		case UW_SCSI_DATA_RESP:
			if (cmd.dir != UW_SCSI_DIR_IN || cmd.len > UW_SCSI_RESP_MAX ||
			    cmd.len > alloc)
				abort();
			break;
		case UW_SCSI_DATA_DISCARD:
			if (cmd.dir != UW_SCSI_DIR_OUT)
				abort();
			break;
		case UW_SCSI_DATA_MEDIUM: {
			if (cmd.offset % UW_SCSI_BLOCK || cmd.len % UW_SCSI_BLOCK ||
			    cmd.offset >= img || cmd.len > img - cmd.offset)
				abort();
			if (cmd.write != (cmd.dir == UW_SCSI_DIR_OUT) || (cmd.write && ro))
				abort();
			size_t n = (size_t)cmd.len;
			if (cmd.write) {
				n = n < out_len ? n : out_len;
				if (n) {
					err = uw_scsi_pwrite(lun, cmd.offset, out, n);
					memcpy(shadow + cmd.offset, out, n);
				}
			} else {
				n = n < IN_MAX ? n : IN_MAX;
				/* Read in two pieces at an odd split, as a transport with URBs
				 * of any size does. */
				size_t half = n / 3;
				err = uw_scsi_pread(lun, cmd.offset, check, half);
				if (!err)
					err = uw_scsi_pread(lun, cmd.offset + half, check + half,
					                    n - half);
				if (!err && memcmp(check, shadow + cmd.offset, n) != 0)
					abort();
			}
			break;
		}
		default:
			abort();
		}
		if (err)
			abort(); /* a memfd does not fail */
		if (cmd.sync && uw_scsi_sync(lun) != 0)
			abort();
		if (uw_scsi_end(lun, &cmd, 0) != UW_SCSI_GOOD)
			abort();
	}
	/* The file holds exactly what the shadow says. */
	static uint8_t file[IMG_MAX];
	if (pread(fd, file, img, 0) != (ssize_t)img || memcmp(file, shadow, img) != 0)
		abort();
	uw_scsi_lun_free(lun);
	close(fd);
	return 0;
}

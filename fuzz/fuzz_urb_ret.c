/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the client's decoder of server messages (RET_SUBMIT, RET_UNLINK). The input
 * starts with a table of outstanding requests the client "sent" (up to 4 entries of 12 bytes:
 * seqnum, direction/type, length, number of packets), then the server's byte stream. ISO
 * requests get request descriptors built from their length, so offset/length echo checks run.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "uw_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NPEND 4
#define MAXNP 16

struct table {
	uint32_t seq[NPEND];
	uw_pending p[NPEND];
	uint8_t iso[NPEND][MAXNP * UW_ISO_DESC_LEN];
};

static bool lookup(void *user, uint32_t seqnum, uw_pending *out)
{
	const struct table *t = user;
	for (int i = 0; i < NPEND; i++) {
		if (t->seq[i] == seqnum) {
			*out = t->p[i];
			return true;
		}
	}
	return false;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < NPEND * 12)
		return 0;
	struct table t;
	memset(&t, 0, sizeof t);
	for (int i = 0; i < NPEND; i++) {
		const uint8_t *e = data + 12 * i;
		t.seq[i] = be32(e);
		t.p[i].direction = e[4] & 1;
		t.p[i].xfer = (e[4] >> 1) & 3;
		t.p[i].transfer_length = (int32_t)(be32(e + 5) & 0xffff);
		t.p[i].number_of_packets = e[9] % (MAXNP + 1);
		if (t.p[i].xfer == UW_XFER_ISO && t.p[i].number_of_packets > 0) {
			int32_t np = t.p[i].number_of_packets;
			uint32_t each = (uint32_t)t.p[i].transfer_length / (uint32_t)np;
			for (int32_t k = 0; k < np; k++) {
				uw_iso_desc dsc = {(uint32_t)k * each, each, 0, -18};
				uw_iso_desc_encode(&dsc, t.iso[i] + (size_t)k * UW_ISO_DESC_LEN);
			}
			t.p[i].iso_req = t.iso[i];
		}
	}
	data += NPEND * 12;
	size -= NPEND * 12;
	size_t pos = 0;
	while (pos < size) {
		uw_ret r;
		uw_dec d;
		if (uw_ret_decode(data + pos, size - pos, lookup, &t, &r, &d) != UW_DEC_DONE)
			break;
		if (d.len < UW_URB_HDR_LEN || d.len > size - pos)
			abort();
		if (r.data_len && (r.data != data + pos + UW_URB_HDR_LEN))
			abort();
		if (r.hdr.command == UW_RET_SUBMIT && r.hdr.u.ret.actual_length < 0)
			abort();
		uint8_t out[UW_URB_HDR_LEN];
		uw_urb_hdr_encode(&r.hdr, out);
		size_t cmp = r.hdr.command == UW_RET_UNLINK ? 24 : 40;
		if (memcmp(out, data + pos, cmp) != 0)
			abort();
		pos += d.len;
	}
	return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the server's decoder of client messages (CMD_SUBMIT, CMD_UNLINK), as a stream:
 * the input is decoded message after message, as a session would. The first byte picks which
 * endpoints of the imaginary device are isochronous, interrupt or bulk. Oracles: consumption
 * always advances, re-encoded headers match the input, every prefix of a message asks for more,
 * and the header-only decoder agrees with the whole-message decoder.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "uw_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int ep_type(void *user, uint32_t ep, uint32_t dir)
{
	uint8_t sel = *(const uint8_t *)user;
	/* Two bits per endpoint number 1..3 from the selector; everything else bulk. */
	if (ep >= 1 && ep <= 3)
		return (sel >> (2 * (ep - 1) + dir)) & 3;
	return UW_XFER_BULK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t sel = data[0];
	data++;
	size--;
	size_t pos = 0;
	while (pos < size) {
		uw_cmd c;
		uw_dec d;
		enum uw_dec_status st =
		    uw_cmd_decode(data + pos, size - pos, ep_type, &sel, &c, &d);
		if (st != UW_DEC_DONE)
			break;
		if (d.len < UW_URB_HDR_LEN || d.len > size - pos)
			abort();
		/* Header-only decode agrees on the payload sizes. */
		uw_urb_hdr h;
		int xfer;
		size_t dl, il;
		uw_dec d2;
		if (uw_cmd_hdr_decode(data + pos, UW_URB_HDR_LEN, ep_type, &sel, &h, &xfer, &dl,
		                      &il, &d2) != UW_DEC_DONE ||
		    UW_URB_HDR_LEN + dl + il != d.len || dl != c.data_len)
			abort();
		/* Re-encoding gives the same header bytes (CMD_UNLINK padding is not kept). */
		uint8_t out[UW_URB_HDR_LEN];
		uw_urb_hdr_encode(&c.hdr, out);
		size_t cmp = c.hdr.command == UW_CMD_UNLINK ? 24 : UW_URB_HDR_LEN;
		if (memcmp(out, data + pos, cmp) != 0)
			abort();
		if (d.len <= 4096) {
			for (size_t k = 0; k < d.len; k++) {
				uw_dec dk;
				if (uw_cmd_decode(data + pos, k, ep_type, &sel, &c, &dk) !=
				    UW_DEC_MORE)
					abort();
			}
		}
		pos += d.len;
	}
	return 0;
}

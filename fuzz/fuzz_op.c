/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: every op-phase decoder (OP_REQ_*, OP_REP_IMPORT, OP_REP_DEVLIST framing and
 * iteration). Oracles beyond "no crash": a DONE answer is stable under extra bytes, every prefix
 * of a complete message asks for more, and a decoded message re-encodes to the same bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "uw_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_prefixes_need_more(enum uw_dec_status (*fn)(const uint8_t *, size_t, uw_dec *),
                                     const uint8_t *data, size_t done_len)
{
	for (size_t k = 0; k < done_len; k++) {
		uw_dec d;
		if (fn(data, k, &d) != UW_DEC_MORE)
			abort();
		if (d.len == 0 || d.len > done_len - k)
			abort();
	}
}

static enum uw_dec_status req(const uint8_t *b, size_t n, uw_dec *d)
{
	uw_op_request r;
	return uw_op_request_decode(b, n, &r, d);
}

static enum uw_dec_status rep_import(const uint8_t *b, size_t n, uw_dec *d)
{
	uint32_t st;
	uw_usb_device dev;
	return uw_op_rep_import_decode(b, n, &st, &dev, d);
}

static enum uw_dec_status devlist(const uint8_t *b, size_t n, uw_dec *d)
{
	uint32_t nd;
	return uw_op_rep_devlist_frame(b, n, &nd, d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uw_dec d;
	uint8_t out[UW_OP_REP_IMPORT_LEN + 2048];

	uw_op_request r;
	if (uw_op_request_decode(data, size, &r, &d) == UW_DEC_DONE) {
		check_prefixes_need_more(req, data, d.len);
		int n = r.code == UW_OP_REQ_IMPORT
		            ? uw_op_req_import_encode(out, sizeof out, r.busid)
		            : uw_op_common_encode(out, sizeof out, r.code, 0);
		/* Busid bytes after the NUL are ignored by the decoder, so compare up to it. */
		size_t cmp = r.code == UW_OP_REQ_IMPORT ? 8 + strlen(r.busid) + 1 : 8;
		if (n != (int)d.len || memcmp(out, data, cmp) != 0)
			abort();
	}

	uint32_t st;
	uw_usb_device dev;
	if (uw_op_rep_import_decode(data, size, &st, &dev, &d) == UW_DEC_DONE) {
		check_prefixes_need_more(rep_import, data, d.len);
		int n = uw_op_rep_import_encode(out, sizeof out, st, &dev);
		if (n != (int)d.len)
			abort();
		uw_usb_device again;
		uint32_t st2;
		if (uw_op_rep_import_decode(out, (size_t)n, &st2, &again, &d) != UW_DEC_DONE ||
		    st2 != st || (st == 0 && memcmp(&again, &dev, sizeof dev) != 0))
			abort();
	}

	uint32_t ndev;
	if (uw_op_rep_devlist_frame(data, size, &ndev, &d) == UW_DEC_DONE) {
		size_t total = d.len;
		if (total <= 4096)
			check_prefixes_need_more(devlist, data, total);
		size_t pos = UW_OP_REP_DEVLIST_HDR;
		uw_usb_interface ifs[255];
		for (uint32_t i = 0; i < ndev; i++) {
			if (uw_devlist_next(data, total, &pos, &dev, ifs, 255) != UW_OK)
				abort();
			uint8_t ent[UW_DEVREC_LEN + 255 * UW_IFREC_LEN];
			int n = uw_devlist_entry_encode(ent, sizeof ent, &dev, ifs);
			if (n != (int)uw_devlist_entry_len(dev.num_interfaces))
				abort();
		}
		if (pos != total)
			abort();
	}
	return 0;
}

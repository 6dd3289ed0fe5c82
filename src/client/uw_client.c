/* SPDX-License-Identifier: MIT */
#include "uw_client.h"
#include "uw_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uw_net.h"

static int io_error(int rc, const char *what, char *err, size_t errlen)
{
	if (rc == UW_E_CLOSED)
		snprintf(err, errlen, "server closed the connection %s", what);
	else if (rc == UW_E_TIMEOUT)
		snprintf(err, errlen, "server did not answer in time %s", what);
	else
		snprintf(err, errlen, "%s %s", uw_strerror(rc), what);
	return rc;
}

static int bad_reply(const uw_dec *d, const char *what, char *err, size_t errlen)
{
	char msg[256];
	snprintf(err, errlen, "invalid %s from server: %s", what,
	         uw_dec_format(d, msg, sizeof msg));
	return d->err;
}

int uw_client_list(int fd, int timeout_ms, uw_devlist *out, char *err, size_t errlen)
{
	uint8_t req[UW_OP_REQ_DEVLIST_LEN];
	uw_op_common_encode(req, sizeof req, UW_OP_REQ_DEVLIST, 0);
	int rc = uw_net_send_all(fd, req, sizeof req, timeout_ms);
	if (rc)
		return io_error(rc, "while sending the request", err, errlen);
	/* Grow the buffer only by what the validated prefix says is still missing. */
	size_t have = 0, cap = 0;
	uint8_t *buf = NULL;
	uint32_t ndev = 0;
	uw_dec d;
	for (;;) {
		enum uw_dec_status st = uw_op_rep_devlist_frame(buf, have, &ndev, &d);
		if (st == UW_DEC_DONE)
			break;
		if (st == UW_DEC_ERROR) {
			free(buf);
			return bad_reply(&d, "device list", err, errlen);
		}
		size_t need = have + d.len;
		if (need > cap) {
			uint8_t *nb = realloc(buf, need);
			if (!nb) {
				free(buf);
				snprintf(err, errlen, "out of memory");
				return UW_E_NOMEM;
			}
			buf = nb;
			cap = need;
		}
		rc = uw_net_recv_all(fd, buf + have, d.len, timeout_ms);
		if (rc) {
			free(buf);
			return io_error(rc,
			                have ? "in the middle of the device list"
			                     : "without replying (is it a USB/IP server?)",
			                err, errlen);
		}
		have = need;
	}
	uw_devlist l = {.n = ndev, .devs = calloc(ndev ? ndev : 1, sizeof(uw_devlist_entry))};
	if (!l.devs) {
		free(buf);
		snprintf(err, errlen, "out of memory");
		return UW_E_NOMEM;
	}
	size_t pos = UW_OP_REP_DEVLIST_HDR;
	for (uint32_t i = 0; i < ndev; i++)
		uw_devlist_next(buf, have, &pos, &l.devs[i].dev, l.devs[i].ifaces,
		                UW_MAX_INTERFACES);
	free(buf);
	*out = l;
	return UW_OK;
}

void uw_devlist_free(uw_devlist *l)
{
	free(l->devs);
	l->devs = NULL;
	l->n = 0;
}

int uw_client_import(int fd, const char *busid, int timeout_ms, uw_usb_device *dev, uint32_t *st,
                     char *err, size_t errlen)
{
	uint8_t req[UW_OP_REQ_IMPORT_LEN];
	if (uw_op_req_import_encode(req, sizeof req, busid) < 0) {
		snprintf(err, errlen, "invalid busid \"%s\" (1 to 31 characters)", busid);
		return UW_E_INVAL;
	}
	int rc = uw_net_send_all(fd, req, sizeof req, timeout_ms);
	if (rc)
		return io_error(rc, "while sending the request", err, errlen);
	uint8_t rep[UW_OP_REP_IMPORT_LEN];
	size_t have = 0;
	uw_dec d;
	uint32_t status = 0;
	uw_usb_device v;
	for (;;) {
		enum uw_dec_status s = uw_op_rep_import_decode(rep, have, &status, &v, &d);
		if (s == UW_DEC_DONE)
			break;
		if (s == UW_DEC_ERROR)
			return bad_reply(&d, "import reply", err, errlen);
		rc = uw_net_recv_all(fd, rep + have, d.len, timeout_ms);
		if (rc)
			return io_error(rc,
			                have ? "in the middle of the import reply"
			                     : "without replying (is it a USB/IP server?)",
			                err, errlen);
		have += d.len;
	}
	*st = status;
	if (status != UW_ST_OK) {
		snprintf(err, errlen, "%s", uw_op_status_str(status));
		return UW_E_REFUSED;
	}
	if (strcmp(v.busid, busid) != 0) {
		char shown[UW_ESCAPE_SIZE(UW_BUSID_SIZE)]; /* the server's bytes, escaped */
		snprintf(err, errlen, "server answered for busid \"%s\", not \"%s\"",
		         uw_escape(shown, sizeof shown, v.busid, sizeof v.busid), busid);
		return UW_E_PROTO;
	}
	*dev = v;
	return UW_OK;
}

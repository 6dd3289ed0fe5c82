/* SPDX-License-Identifier: MIT */
/*
 * uw_turb.h - test URBs for driving a uw_dev directly (emulated-device unit tests): a uw_urb
 * with its own buffer (and ISO packet array, if the test sets one) that counts its completions
 * and remembers when the last one happened.
 */
#ifndef UW_TURB_H
#define UW_TURB_H

#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "uw_dev.h"

typedef struct turb {
	uw_urb u;
	int completions;
	uint64_t done_ns; /* CLOCK_MONOTONIC of the last completion */
	uint8_t *buf;
	uw_iso_pkt *iso; /* freed with the URB */
} turb;

static int turb_done_total; /* completions of every test URB */

static inline uint64_t turb_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void turb_on_done(uw_urb *u)
{
	turb *t = u->owner;
	t->completions++;
	t->done_ns = turb_now_ns();
	turb_done_total++;
}

/* A URB to ep of len bytes (zeroed buffer; none for 0); status 12345 until it completes. */
static inline turb *turb_new(uint8_t ep, uint8_t dir, uint8_t xfer, uint32_t len)
{
	turb *t = calloc(1, sizeof *t);
	if (!t)
		abort();
	t->buf = len ? calloc(1, len) : NULL;
	t->u.ep = ep;
	t->u.dir = dir;
	t->u.xfer = xfer;
	t->u.buf = t->buf;
	t->u.len = len;
	t->u.done = turb_on_done;
	t->u.owner = t;
	t->u.status = 12345;
	return t;
}

static inline void turb_free(turb *t)
{
	free(t->buf);
	free(t->iso);
	free(t);
}

#endif /* UW_TURB_H */

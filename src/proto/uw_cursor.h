/* SPDX-License-Identifier: MIT */
/*
 * uw_cursor.h - bounds-checked reading and writing of wire bytes.
 *
 * A cursor never reads or writes outside [p, p + len). A failed access sets a sticky error flag,
 * returns 0 and moves the cursor to the end, so a decoder can read a run of fields and check the
 * flag once. Byte order is explicit in every accessor's name: USB/IP headers are big-endian, the
 * USB SETUP packet and USB descriptors little-endian. No struct is ever cast over a buffer.
 */
#ifndef UW_CURSOR_H
#define UW_CURSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct uw_rcur {
	const uint8_t *p;
	size_t len;
	size_t off;
	bool err;
} uw_rcur;

typedef struct uw_wcur {
	uint8_t *p;
	size_t len;
	size_t off;
	bool err;
} uw_wcur;

static inline uw_rcur uw_rcur_make(const void *p, size_t len)
{
	uw_rcur c = {(const uint8_t *)p, len, 0, false};
	return c;
}

static inline uw_wcur uw_wcur_make(void *p, size_t len)
{
	uw_wcur c = {(uint8_t *)p, len, 0, false};
	return c;
}

static inline size_t uw_rcur_left(const uw_rcur *c)
{
	return c->len - c->off;
}

/* Returns a pointer to the next n bytes and advances, or NULL (and sets err) if fewer remain. */
static inline const uint8_t *uw_rcur_take(uw_rcur *c, size_t n)
{
	if (c->err || uw_rcur_left(c) < n) {
		c->err = true;
		c->off = c->len;
		return NULL;
	}
	const uint8_t *q = c->p + c->off;
	c->off += n;
	return q;
}

static inline uint8_t uw_get_u8(uw_rcur *c)
{
	const uint8_t *q = uw_rcur_take(c, 1);
	return q ? q[0] : 0;
}

static inline uint16_t uw_get_be16(uw_rcur *c)
{
	const uint8_t *q = uw_rcur_take(c, 2);
	return q ? (uint16_t)((unsigned)q[0] << 8 | q[1]) : 0;
}

static inline uint32_t uw_get_be32(uw_rcur *c)
{
	const uint8_t *q = uw_rcur_take(c, 4);
	return q ? (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | q[3] : 0;
}

static inline uint16_t uw_get_le16(uw_rcur *c)
{
	const uint8_t *q = uw_rcur_take(c, 2);
	return q ? (uint16_t)((unsigned)q[1] << 8 | q[0]) : 0;
}

static inline uint32_t uw_get_le32(uw_rcur *c)
{
	const uint8_t *q = uw_rcur_take(c, 4);
	return q ? (uint32_t)q[3] << 24 | (uint32_t)q[2] << 16 | (uint32_t)q[1] << 8 | q[0] : 0;
}

/* Two's complement reinterpretation without implementation-defined conversion. */
static inline int32_t uw_s32(uint32_t v)
{
	return v <= INT32_MAX ? (int32_t)v : (int32_t)(v - (uint32_t)INT32_MAX - 1u) + INT32_MIN;
}

static inline int32_t uw_get_be32s(uw_rcur *c)
{
	return uw_s32(uw_get_be32(c));
}

static inline uint8_t *uw_wcur_take(uw_wcur *c, size_t n)
{
	if (c->err || c->len - c->off < n) {
		c->err = true;
		c->off = c->len;
		return NULL;
	}
	uint8_t *q = c->p + c->off;
	c->off += n;
	return q;
}

static inline void uw_put_u8(uw_wcur *c, uint8_t v)
{
	uint8_t *q = uw_wcur_take(c, 1);
	if (q)
		q[0] = v;
}

static inline void uw_put_be16(uw_wcur *c, uint16_t v)
{
	uint8_t *q = uw_wcur_take(c, 2);
	if (q) {
		q[0] = (uint8_t)(v >> 8);
		q[1] = (uint8_t)v;
	}
}

static inline void uw_put_be32(uw_wcur *c, uint32_t v)
{
	uint8_t *q = uw_wcur_take(c, 4);
	if (q) {
		q[0] = (uint8_t)(v >> 24);
		q[1] = (uint8_t)(v >> 16);
		q[2] = (uint8_t)(v >> 8);
		q[3] = (uint8_t)v;
	}
}

static inline void uw_put_le16(uw_wcur *c, uint16_t v)
{
	uint8_t *q = uw_wcur_take(c, 2);
	if (q) {
		q[0] = (uint8_t)v;
		q[1] = (uint8_t)(v >> 8);
	}
}

static inline void uw_put_be32s(uw_wcur *c, int32_t v)
{
	uw_put_be32(c, (uint32_t)v);
}

static inline void uw_put_bytes(uw_wcur *c, const void *src, size_t n)
{
	uint8_t *q = uw_wcur_take(c, n);
	if (q && n)
		memcpy(q, src, n);
}

static inline void uw_put_zeros(uw_wcur *c, size_t n)
{
	uint8_t *q = uw_wcur_take(c, n);
	if (q && n)
		memset(q, 0, n);
}

#endif /* UW_CURSOR_H */

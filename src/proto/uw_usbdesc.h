/* SPDX-License-Identifier: MIT */
/*
 * uw_usbdesc.h - validation and decoding of USB descriptors from untrusted bytes.
 *
 * The bytes come from a device (a server reading its own device) or from a remote peer (a client
 * reading what the server forwards), so every length and count is checked before it is used.
 * Descriptors are little-endian and are decoded field by field through the bounds-checked cursor;
 * nothing here reads outside [buf, buf + len), allocates, does I/O, keeps global state or prints.
 * Every function is reentrant and thread-safe; concurrent calls on the same read-only input are
 * fine. Pointers in results point into the caller's buffer and live as long as it does.
 *
 * Errors are negative uw_err values:
 *   UW_E_SHORT  the input ends before the descriptor (or the wTotalLength it announces) does;
 *   UW_E_DESC   a descriptor breaks a rule (a length, a type, a count, a reserved value);
 *   UW_E_LIMIT  a count is over one of the limits of uw_limits.h;
 *   UW_E_INVAL  a bad argument (NULL where a pointer is required, a capacity of 0, ...);
 *   UW_E_NOTFOUND  a query found nothing (an endpoint, an altsetting, a capability).
 * Functions that take a uw_desc_err *err (may be NULL) fill it on failure only: the byte offset
 * of the offending field within the input and a static text "<descriptor>.<field>: <rule>".
 * Every other out-parameter is written only on success.
 *
 * Configurations (and BOS descriptors) are validated as a whole before anything in them is
 * used: uw_config_check() walks every descriptor once and enforces the rules listed there. The
 * queries (uw_config_find_endpoint(), uw_ep_table_build(), ...) validate again on each call, so
 * they are safe on raw bytes; each costs one pass over wTotalLength bytes, i.e. microseconds,
 * which is cheap enough to run on every SET_CONFIGURATION and SET_INTERFACE.
 */
#ifndef UW_USBDESC_H
#define UW_USBDESC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "uw_error.h"
#include "uw_limits.h"
#include "uw_wire.h"

#ifndef UW_MUST_CHECK
#if defined(__GNUC__) || defined(__clang__)
#define UW_MUST_CHECK __attribute__((warn_unused_result))
#else
#define UW_MUST_CHECK
#endif
#endif

/* ---- Descriptor facts (USB 2.0 ch. 9, USB 3.2 ch. 9) ------------------------------------- */

enum uw_desc_type {
	UW_DT_DEVICE = 1,
	UW_DT_CONFIG = 2,
	UW_DT_STRING = 3,
	UW_DT_INTERFACE = 4,
	UW_DT_ENDPOINT = 5,
	UW_DT_DEVICE_QUALIFIER = 6,
	UW_DT_OTHER_SPEED_CONFIG = 7,
	UW_DT_INTERFACE_POWER = 8,
	UW_DT_OTG = 9,
	UW_DT_DEBUG = 10,
	UW_DT_IAD = 11, /* interface association */
	UW_DT_BOS = 15,
	UW_DT_DEVICE_CAP = 16,
	UW_DT_SS_EP_COMP = 48,      /* SuperSpeed endpoint companion */
	UW_DT_SSP_ISO_EP_COMP = 49, /* SuperSpeedPlus isochronous endpoint companion */
};

/* Device capability types (bDevCapabilityType) decoded by uw_bos_iter_next(). */
enum uw_devcap_type {
	UW_CAP_WIRELESS = 0x01,
	UW_CAP_USB2_EXT = 0x02,
	UW_CAP_SUPERSPEED = 0x03,
	UW_CAP_CONTAINER_ID = 0x04,
	UW_CAP_PLATFORM = 0x05,
	UW_CAP_SUPERSPEED_PLUS = 0x0a,
};

/* Minimum bLength of each descriptor (exactly the length for device, qualifier). */
#define UW_DEVICE_DESC_LEN     18u
#define UW_CONFIG_DESC_LEN     9u
#define UW_INTERFACE_DESC_LEN  9u
#define UW_ENDPOINT_DESC_LEN   7u
#define UW_QUALIFIER_DESC_LEN  10u
#define UW_IAD_DESC_LEN        8u
#define UW_SS_EP_COMP_LEN      6u
#define UW_SSP_ISO_EP_COMP_LEN 8u
#define UW_BOS_DESC_LEN        5u
#define UW_DEVCAP_MIN_LEN      3u
#define UW_STRING_DESC_MAX_LEN 255u /* bLength is a u8 */
#define UW_STRING_MAX_UNITS    126u /* UTF-16 code units in one string descriptor */
#define UW_STRING_UTF8_MAX     378u /* UTF-8 bytes of the longest string, without the NUL */
#define UW_IFACE_NUMBERS       256u /* bInterfaceNumber is a u8 */
#define UW_EP_TABLE_SIZE       16u  /* endpoint numbers 0..15 per direction */

/* ---- Errors --------------------------------------------------------------------------------- */

/* Where and what was wrong, for a log. Filled only when a function fails. */
typedef struct uw_desc_err {
	size_t off;       /* offset in the input of the offending field (or descriptor) */
	const char *what; /* static text, "<descriptor>.<field>: <rule broken>" */
	int64_t value;    /* the offending value when it is a number, else 0 */
} uw_desc_err;

/* ---- Device descriptor ------------------------------------------------------------------------
 */

typedef struct uw_device_desc {
	uint16_t bcd_usb;
	uint8_t device_class;
	uint8_t device_subclass;
	uint8_t device_protocol;
	uint8_t max_packet_size0; /* as sent: bytes, or an exponent (9) for SuperSpeed */
	uint16_t id_vendor;
	uint16_t id_product;
	uint16_t bcd_device;
	uint8_t i_manufacturer;
	uint8_t i_product;
	uint8_t i_serial_number;
	uint8_t num_configurations;
} uw_device_desc;

/**
 * uw_device_desc_parse() - decode a device descriptor.
 * buf holds at least the 18 bytes of the descriptor; bytes after them are ignored. Rules:
 * bLength == 18, bDescriptorType == 1, bMaxPacketSize0 one of 8, 16, 32, 64 (or 9, meaning
 * 2^9 = 512, when bcdUSB >= 0x0300), bNumConfigurations >= 1.
 * Returns UW_OK and fills *out; UW_E_SHORT if len < 18 (after checking the bytes present);
 * UW_E_DESC; UW_E_INVAL if buf or out is NULL.
 */
UW_MUST_CHECK int uw_device_desc_parse(const uint8_t *buf, size_t len, uw_device_desc *out,
                                       uw_desc_err *err);

/**
 * uw_device_ep0_max_packet() - the maximum packet size of endpoint 0 in bytes (512 for the
 * SuperSpeed exponent 9) of a descriptor accepted by uw_device_desc_parse(). Thread-safe.
 */
unsigned uw_device_ep0_max_packet(const uw_device_desc *dev);

/* ---- Device qualifier (type 6) ------------------------------------------------------------- */

typedef struct uw_qualifier_desc {
	uint16_t bcd_usb;
	uint8_t device_class;
	uint8_t device_subclass;
	uint8_t device_protocol;
	uint8_t max_packet_size0;
	uint8_t num_configurations;
} uw_qualifier_desc;

/**
 * uw_qualifier_desc_parse() - decode a device qualifier: bLength == 10, bDescriptorType == 6,
 * bMaxPacketSize0 one of 8, 16, 32, 64. Bytes after the 10 are ignored.
 * Returns UW_OK, UW_E_SHORT (len < 10), UW_E_DESC, UW_E_INVAL (NULL argument).
 */
UW_MUST_CHECK int uw_qualifier_desc_parse(const uint8_t *buf, size_t len, uw_qualifier_desc *out,
                                          uw_desc_err *err);

/* ---- Configuration descriptors (type 2) and other-speed configurations (type 7) ----------- */

typedef struct uw_config_desc {
	uint8_t type;          /* UW_DT_CONFIG or UW_DT_OTHER_SPEED_CONFIG */
	uint8_t length;        /* bLength (>= 9) */
	uint16_t total_length; /* wTotalLength */
	uint8_t num_interfaces;
	uint8_t configuration_value;
	uint8_t i_configuration;
	uint8_t attributes; /* bmAttributes: 0x40 self-powered, 0x20 remote wakeup */
	uint8_t max_power;  /* bMaxPower, units of 2 mA (8 mA at SuperSpeed) */
} uw_config_desc;

typedef struct uw_interface_desc {
	uint8_t interface_number;
	uint8_t alternate_setting;
	uint8_t num_endpoints;
	uint8_t interface_class;
	uint8_t interface_subclass;
	uint8_t interface_protocol;
	uint8_t i_interface;
} uw_interface_desc;

typedef struct uw_iad_desc {
	uint8_t first_interface;
	uint8_t interface_count;
	uint8_t function_class;
	uint8_t function_subclass;
	uint8_t function_protocol;
	uint8_t i_function;
} uw_iad_desc;

/* An endpoint with its SuperSpeed companions folded in. */
typedef struct uw_endpoint_desc {
	uint8_t address;         /* bEndpointAddress: number 1..15, bit 7 = IN */
	uint8_t attributes;      /* bmAttributes as sent */
	uint16_t max_packet_raw; /* wMaxPacketSize as sent */
	uint8_t interval;        /* bInterval as sent */
	uint8_t number;          /* address & 0x0f */
	uint8_t dir;             /* enum uw_dir */
	uint8_t xfer;            /* enum uw_xfer: attributes & 3 */
	uint16_t max_packet;     /* wMaxPacketSize bits 0..10 */
	uint8_t mult;            /* 1..3: packets per (micro)frame; HS isoc/interrupt wMaxPacketSize
	                          * bits 11..12, SuperSpeed isoc companion Mult; else 1 */
	uint8_t burst;           /* 1..16: SuperSpeed bMaxBurst + 1; 1 without a companion */
	bool has_ss_comp;        /* a SuperSpeed companion follows the endpoint */
	uint8_t ss_attributes;   /* companion bmAttributes (bulk: MaxStreams; isoc: Mult, SSP) */
	uint32_t bytes_per_interval; /* companion wBytesPerInterval, or the SuperSpeedPlus isoc
	                              * companion's dwBytesPerInterval when one follows; else 0 */
} uw_endpoint_desc;

/* The most bytes one service interval can carry: max_packet x mult x burst. */
static inline uint32_t uw_endpoint_max_payload(const uw_endpoint_desc *ep)
{
	return (uint32_t)ep->max_packet * ep->mult * ep->burst;
}

/**
 * uw_config_header_parse() - decode the 9-byte header of a configuration (type 2) or
 * other-speed configuration (type 7), e.g. after GET_DESCRIPTOR(CONFIGURATION, wLength 9), to
 * learn wTotalLength before reading the whole. Checks bLength >= 9, the type and wTotalLength
 * >= bLength; does not look past the header.
 * Returns UW_OK, UW_E_SHORT (fewer than 9 bytes, those present valid), UW_E_DESC, UW_E_INVAL.
 */
UW_MUST_CHECK int uw_config_header_parse(const uint8_t *buf, size_t len, uw_config_desc *out,
                                         uw_desc_err *err);

/**
 * uw_config_check() - validate a whole configuration descriptor (type 2) and its descriptors.
 * buf holds at least wTotalLength bytes; bytes after wTotalLength are ignored. Rules:
 *  - header: bLength >= 9, bDescriptorType 2, 9 <= wTotalLength <= len (else UW_E_SHORT);
 *  - every descriptor after it: bLength >= 2, inside wTotalLength; the chain ends exactly at
 *    wTotalLength; device, configuration, string, qualifier, BOS and capability descriptors are
 *    not allowed inside; unknown and class-specific descriptors are skipped;
 *  - interface: bLength >= 9; bNumEndpoints <= UW_MAX_ENDPOINTS (UW_E_LIMIT) and equal to the
 *    number of endpoint descriptors before the next interface; (number, altsetting) unique; at
 *    most UW_MAX_INTERFACES distinct numbers and UW_MAX_ALTSETTINGS altsettings per number
 *    (UW_E_LIMIT); each number has altsetting 0; bNumInterfaces equals the count of numbers;
 *  - endpoint: bLength >= 7; after an interface; number 1..15, bits 4..6 zero; address unique
 *    within the altsetting; for isochronous and interrupt endpoints wMaxPacketSize bits 11..12
 *    != 3;
 *  - SuperSpeed companion (48): bLength >= 6, directly after an endpoint, bMaxBurst <= 15,
 *    isochronous Mult <= 2, bulk MaxStreams <= 16; SuperSpeedPlus isochronous companion (49):
 *    bLength >= 8, directly after a companion of an isochronous endpoint that announces it;
 *  - interface association: bLength >= 8, bInterfaceCount >= 1, range within 0..255.
 * Endpoint addresses repeated across different interfaces are accepted here (only the
 * altsettings in use can clash; uw_ep_table_build() rejects that).
 * Returns UW_OK and fills *out (may be NULL) with the header, or UW_E_SHORT, UW_E_DESC,
 * UW_E_LIMIT, UW_E_INVAL (buf NULL).
 */
UW_MUST_CHECK int uw_config_check(const uint8_t *buf, size_t len, uw_config_desc *out,
                                  uw_desc_err *err);

/**
 * uw_other_speed_config_check() - as uw_config_check(), for an other-speed configuration
 * (bDescriptorType 7, same layout).
 */
UW_MUST_CHECK int uw_other_speed_config_check(const uint8_t *buf, size_t len, uw_config_desc *out,
                                              uw_desc_err *err);

/* What the iterator yields. */
enum uw_desc_kind {
	UW_DK_CONFIG = 0,          /* the header; u.config */
	UW_DK_IAD = 1,             /* u.iad */
	UW_DK_INTERFACE = 2,       /* u.intf; starts a new (iface, alt) context */
	UW_DK_ENDPOINT = 3,        /* u.ep, with its companions folded in */
	UW_DK_SS_EP_COMP = 4,      /* raw only; its values are in the preceding endpoint's item */
	UW_DK_SSP_ISO_EP_COMP = 5, /* raw only; likewise */
	UW_DK_OTHER = 6,           /* class-specific, vendor, OTG, ...: raw only */
};

typedef struct uw_desc_item {
	enum uw_desc_kind kind;
	uint8_t type;       /* bDescriptorType */
	const uint8_t *raw; /* the descriptor's bytes in the caller's buffer, bLength of them */
	size_t len;         /* bLength */
	size_t off;         /* offset of the descriptor from the start of the configuration */
	int iface;          /* bInterfaceNumber of the enclosing interface, -1 before the first */
	int alt;            /* its bAlternateSetting, -1 before the first interface */
	union {
		uw_config_desc config;
		uw_iad_desc iad;
		uw_interface_desc intf;
		uw_endpoint_desc ep;
	} u;
} uw_desc_item;

/* Iterator state; caller storage, no resources, no _fini needed. Treat as opaque. */
typedef struct uw_config_iter {
	const uint8_t *buf;
	size_t total; /* wTotalLength */
	size_t off;
	int iface;
	int alt;
} uw_config_iter;

/**
 * uw_config_iter_init() - validate buf as a configuration or other-speed configuration (the
 * rules of uw_config_check()) and position the iterator on its header.
 * Returns UW_OK, or the error of the check (the iterator is then untouched).
 */
UW_MUST_CHECK int uw_config_iter_init(uw_config_iter *it, const uint8_t *buf, size_t len,
                                      uw_desc_err *err);

/**
 * uw_config_iter_next() - yield the next descriptor, in order, starting with the header; every
 * descriptor is yielded exactly once. Returns 1 and fills *item, 0 at the end (wTotalLength
 * reached), or UW_E_DESC if the iterator state was corrupted (it still never reads outside
 * the buffer), UW_E_INVAL for NULL arguments.
 */
UW_MUST_CHECK int uw_config_iter_next(uw_config_iter *it, uw_desc_item *item);

/* The altsetting chosen for each interface number: what a server tracks between
 * SET_CONFIGURATION (reset all to 0) and SET_INTERFACE (alt[wIndex] = wValue). */
typedef struct uw_alt_sel {
	uint8_t alt[UW_IFACE_NUMBERS];
} uw_alt_sel;

/* Select altsetting 0 everywhere. */
static inline void uw_alt_sel_reset(uw_alt_sel *sel)
{
	memset(sel, 0, sizeof(*sel));
}

/**
 * uw_config_interface_count() - bNumInterfaces of a valid configuration (type 2 or 7).
 * Returns the count (>= 0) or a negative uw_err from the check.
 */
UW_MUST_CHECK int uw_config_interface_count(const uint8_t *cfg, size_t len);

/**
 * uw_config_find_alt() - find interface iface, altsetting alt in a valid configuration (type 2
 * or 7), e.g. to refuse a SET_INTERFACE for an altsetting that does not exist.
 * Returns UW_OK and fills *out (may be NULL), UW_E_NOTFOUND, or an error of the check.
 */
UW_MUST_CHECK int uw_config_find_alt(const uint8_t *cfg, size_t len, uint8_t iface, uint8_t alt,
                                     uw_interface_desc *out);

/**
 * uw_config_find_endpoint() - find endpoint ep_addr (number | 0x80 for IN) among the endpoints
 * of the selected altsetting of each interface (sel NULL: altsetting 0 everywhere). Endpoint 0
 * is never in a configuration (use the device descriptor).
 * Returns UW_OK and fills *out, UW_E_NOTFOUND, UW_E_DESC if two selected altsettings use the
 * address (as uw_ep_table_build()), UW_E_INVAL (NULL cfg or out), or an error of the check.
 */
UW_MUST_CHECK int uw_config_find_endpoint(const uint8_t *cfg, size_t len, const uw_alt_sel *sel,
                                          uint8_t ep_addr, uw_endpoint_desc *out);

/**
 * uw_config_interfaces() - class, subclass and protocol of the selected altsetting (sel NULL:
 * altsetting 0) of each interface, in ascending interface number, as OP_REP_DEVLIST carries
 * them. Writes min(count, max) records to out (out may be NULL when max is 0).
 * Returns the number of interfaces (== bNumInterfaces), UW_E_NOTFOUND if a selected
 * altsetting does not exist (err names the interface), or an error of the check.
 */
UW_MUST_CHECK int uw_config_interfaces(const uint8_t *cfg, size_t len, const uw_alt_sel *sel,
                                       uw_usb_interface *out, size_t max, uw_desc_err *err);

/* ---- Endpoint table: endpoint (number, direction) -> transfer type, for the URB codec ------- */

typedef struct uw_ep_info {
	uint8_t xfer;        /* enum uw_xfer; UW_XFER_UNKNOWN: no such endpoint */
	uint8_t interval;    /* bInterval */
	uint8_t mult;        /* as uw_endpoint_desc; 0 when absent */
	uint8_t burst;       /* as uw_endpoint_desc; 0 when absent */
	uint16_t max_packet; /* bytes per packet; for endpoint 0 from the device descriptor */
	uint8_t iface;       /* interface owning the endpoint (0 for endpoint 0) */
	uint8_t alt;         /* its selected altsetting */
} uw_ep_info;

typedef struct uw_ep_table {
	uw_ep_info in[UW_EP_TABLE_SIZE];  /* by endpoint number */
	uw_ep_info out[UW_EP_TABLE_SIZE]; /* by endpoint number */
} uw_ep_table;

/**
 * uw_ep_table_build() - the endpoints a client may address right now: endpoint 0 (control, both
 * directions, max packet from dev when it is not NULL, else 0) plus the endpoints of the
 * selected altsetting of each interface of cfg (sel NULL: altsetting 0 everywhere). cfg NULL
 * (len ignored) means unconfigured: endpoint 0 only.
 * Returns UW_OK and fills *out; UW_E_NOTFOUND if a selected altsetting does not exist;
 * UW_E_DESC if two selected altsettings use the same endpoint address; an error of the check;
 * UW_E_INVAL if out is NULL.
 */
UW_MUST_CHECK int uw_ep_table_build(const uint8_t *cfg, size_t len, const uw_alt_sel *sel,
                                    const uw_device_desc *dev, uw_ep_table *out, uw_desc_err *err);

/**
 * uw_ep_table_xfer() - enum uw_xfer of endpoint ep in direction dir (enum uw_dir), or
 * UW_XFER_UNKNOWN when absent or out of range. Thread-safe on a table nobody is writing.
 */
int uw_ep_table_xfer(const uw_ep_table *t, uint32_t ep, uint32_t dir);

/** uw_ep_table_type_fn() - uw_ep_table_xfer() shaped as a uw_ep_type_fn (user: the table). */
int uw_ep_table_type_fn(void *user, uint32_t ep, uint32_t direction);

/* ---- String descriptors (type 3) ------------------------------------------------------------ */

/**
 * uw_string_desc_to_utf8() - convert string descriptor buf (bLength bytes of UTF-16LE after a
 * 2-byte header) to UTF-8 in out[0..cap). Rules: bLength >= 2 and even, bDescriptorType 3,
 * bLength <= len (else UW_E_SHORT); bytes after bLength are ignored. Unpaired surrogates and
 * U+0000 become U+FFFD; other control characters are kept, so sanitise before printing to a
 * terminal. The output is always NUL-terminated and cut only between characters.
 * Returns, like snprintf, the length in bytes of the whole conversion without the NUL (at most
 * UW_STRING_UTF8_MAX): a value >= cap means out was truncated. Negative uw_err on error
 * (UW_E_INVAL for NULL buf/out or cap 0); out is untouched then.
 */
UW_MUST_CHECK int uw_string_desc_to_utf8(const uint8_t *buf, size_t len, char *out, size_t cap,
                                         uw_desc_err *err);

/**
 * uw_string_langids() - read string descriptor 0, the list of LANGIDs: bLength >= 2 and even,
 * bDescriptorType 3, bLength <= len. Writes min(count, max) LANGIDs to ids (may be NULL when
 * max is 0). Returns the count (0..126) or a negative uw_err.
 */
UW_MUST_CHECK int uw_string_langids(const uint8_t *buf, size_t len, uint16_t *ids, size_t max,
                                    uw_desc_err *err);

/* ---- BOS (type 15) and device capabilities (type 16) -------------------------------------- */

typedef struct uw_bos_desc {
	uint16_t total_length;
	uint8_t num_caps;
} uw_bos_desc;

typedef struct uw_devcap {
	uint8_t cap_type;   /* bDevCapabilityType, enum uw_devcap_type */
	const uint8_t *raw; /* the whole descriptor in the caller's buffer */
	size_t len;         /* bLength */
	size_t off;         /* offset from the start of the BOS */
	union {
		struct {
			uint32_t attributes; /* bit 1: LPM */
		} usb2_ext;
		struct {
			uint8_t attributes;
			uint16_t speeds_supported;
			uint8_t functionality_support;
			uint8_t u1_exit_lat;
			uint16_t u2_exit_lat;
		} superspeed;
		struct {
			uint32_t attributes; /* bits 0..4: sublink speed attribute count - 1 */
			uint16_t functionality_support;
			unsigned sublink_count; /* sublink speed attributes that follow */
		} ssp;
		struct {
			const uint8_t *uuid; /* 16 bytes */
		} container_id;
		struct {
			const uint8_t *uuid; /* 16 bytes; capability data follows */
		} platform;
	} u;
} uw_devcap;

/**
 * uw_bos_header_parse() - decode the 5-byte BOS header (bLength >= 5, type 15, wTotalLength >=
 * bLength), to learn wTotalLength. Returns UW_OK, UW_E_SHORT, UW_E_DESC, UW_E_INVAL.
 */
UW_MUST_CHECK int uw_bos_header_parse(const uint8_t *buf, size_t len, uw_bos_desc *out,
                                      uw_desc_err *err);

/**
 * uw_bos_check() - validate a whole BOS: the header rules, wTotalLength <= len (UW_E_SHORT),
 * bNumDeviceCaps <= UW_MAX_BOS_CAPS (UW_E_LIMIT); then only device capability descriptors
 * (bLength >= 3, inside wTotalLength), exactly bNumDeviceCaps of them, ending exactly at
 * wTotalLength; the known capabilities have their minimum length (USB 2.0 extension 7,
 * SuperSpeed 10, container ID 20, platform 20, SuperSpeedPlus 12 + 4 per sublink attribute).
 * Returns UW_OK and fills *out (may be NULL), or a negative uw_err.
 */
UW_MUST_CHECK int uw_bos_check(const uint8_t *buf, size_t len, uw_bos_desc *out, uw_desc_err *err);

typedef struct uw_bos_iter {
	const uint8_t *buf;
	size_t total;
	size_t off;
} uw_bos_iter;

/** uw_bos_iter_init() - uw_bos_check() and position on the first capability. */
UW_MUST_CHECK int uw_bos_iter_init(uw_bos_iter *it, const uint8_t *buf, size_t len,
                                   uw_desc_err *err);

/**
 * uw_bos_iter_next() - the next device capability. Returns 1 and fills *cap, 0 at the end,
 * UW_E_DESC if the iterator state was corrupted, UW_E_INVAL for NULL arguments.
 */
UW_MUST_CHECK int uw_bos_iter_next(uw_bos_iter *it, uw_devcap *cap);

/**
 * uw_bos_find_cap() - the first capability of type cap_type in a valid BOS.
 * Returns UW_OK and fills *out, UW_E_NOTFOUND, or an error of the check.
 */
UW_MUST_CHECK int uw_bos_find_cap(const uint8_t *buf, size_t len, uint8_t cap_type, uw_devcap *out);

/* ---- Device records for OP_REP_DEVLIST / OP_REP_IMPORT ---------------------------------- */

/**
 * uw_devrec_from_descriptors() - fill a USB/IP device record and its interface records.
 * dev: the device descriptor. config, config_len: the active configuration, or NULL when the
 * device is unconfigured (then config_value must be 0). config_value: the active
 * bConfigurationValue; must equal the configuration's. sel: the altsetting of each interface
 * (NULL: altsetting 0). busid must be 1..31 characters, path 0..255 (each must fit with its
 * NUL). busnum, devnum <= 0xffff (they form the devid). speed: the device's enum uw_speed; the
 * record gets uw_speed_for_wire(speed). Writes dev->num_interfaces (bNumInterfaces, 0 when
 * unconfigured) records to ifaces, in ascending interface number.
 * Returns UW_OK; UW_E_INVAL for a bad argument or a config_value that does not match;
 * UW_E_SHORT if max_ifaces is too small; UW_E_NOTFOUND if a selected altsetting does not
 * exist; an error of the configuration check. Nothing is written on failure.
 */
UW_MUST_CHECK int uw_devrec_from_descriptors(const uw_device_desc *dev, const uint8_t *config,
                                             size_t config_len, uint8_t config_value,
                                             const uw_alt_sel *sel, const char *busid,
                                             const char *path, uint32_t busnum, uint32_t devnum,
                                             enum uw_speed speed, uw_usb_device *out,
                                             uw_usb_interface *ifaces, size_t max_ifaces);

/* ---- Speeds ------------------------------------------------------------------------------- */

/**
 * uw_speed_from_libusb() - enum libusb_speed (0 unknown, 1 low, 2 full, 3 high, 4 super,
 * 5 super-plus, 6 super-plus x2) to enum uw_speed; 5 and 6 give UW_SPEED_SUPER_PLUS, anything
 * else UW_SPEED_UNKNOWN.
 */
enum uw_speed uw_speed_from_libusb(int libusb_speed);

/**
 * uw_speed_to_libusb() - enum uw_speed to enum libusb_speed; UW_SPEED_WIRELESS (which libusb
 * does not have) and unknown values give 0 (LIBUSB_SPEED_UNKNOWN).
 */
int uw_speed_to_libusb(enum uw_speed speed);

/**
 * uw_speed_for_wire() - the speed to put in a device record: UW_SPEED_SUPER_PLUS is reported
 * as UW_SPEED_SUPER (docs/protocol.md §3.2: older vhci rejects 6), values above it as
 * UW_SPEED_UNKNOWN, the rest unchanged.
 */
enum uw_speed uw_speed_for_wire(enum uw_speed speed);

/**
 * uw_speed_from_sysfs() - the text of sysfs "speed" ("1.5", "12", "480", "53.3-480", "5000",
 * "10000", "20000", one trailing newline allowed) to enum uw_speed; "10000" and "20000" give
 * UW_SPEED_SUPER_PLUS (usbipd gives 0). NULL or anything else gives UW_SPEED_UNKNOWN.
 */
enum uw_speed uw_speed_from_sysfs(const char *text);

#endif /* UW_USBDESC_H */

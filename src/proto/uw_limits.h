/* SPDX-License-Identifier: MIT */
/*
 * uw_limits.h - every size of the USB/IP wire format and every limit usbwire applies to a peer.
 *
 * Wire sizes are facts of the Linux protocol 0x0111 (see docs/protocol.md). Limits are our policy:
 * each is checked before anything is allocated for a value a peer sent, in one place (uw_wire.c
 * for messages, uw_usbdesc.c for descriptors), and each has a test at and just past the limit.
 */
#ifndef UW_LIMITS_H
#define UW_LIMITS_H

/* ---- Wire facts ------------------------------------------------------------------------ */
#define UW_PROTO_VERSION      0x0111u /* op_common.version, BCD "1.1.1" */
#define UW_DEFAULT_PORT       3240
#define UW_OP_COMMON_LEN      8u   /* version, code, status */
#define UW_OP_REQ_DEVLIST_LEN 8u   /* op_common only */
#define UW_OP_REQ_IMPORT_LEN  40u  /* op_common + busid[32] */
#define UW_OP_REP_IMPORT_LEN  320u /* op_common + device record (status 0 only) */
#define UW_OP_REP_DEVLIST_HDR 12u  /* op_common + ndev */
#define UW_DEVREC_LEN         312u /* struct usbip_usb_device */
#define UW_IFREC_LEN          4u   /* struct usbip_usb_interface */
#define UW_URB_HDR_LEN        48u  /* every URB-phase header */
#define UW_ISO_DESC_LEN       16u  /* struct usbip_iso_packet_descriptor */
#define UW_SETUP_LEN          8u   /* USB SETUP packet, little-endian fields */
#define UW_BUSID_SIZE         32u  /* NUL-terminated: at most 31 characters */
#define UW_PATH_SIZE          256u /* NUL-terminated: at most 255 characters */
#define UW_MAX_EP             15u  /* endpoint numbers 0..15 */

/* ---- Limits on what a peer may send ------------------------------------------------------- */
/* Largest transfer_buffer_length accepted in a CMD_SUBMIT (and so the largest actual_length in a
 * RET_SUBMIT). Linux clients send scatter-gather bulk URBs of a few hundred KiB (usb-storage
 * max_sectors 240 KiB; UAS more); 16 MiB leaves room and bounds one URB's memory. */
#define UW_MAX_TRANSFER_LEN    (16u * 1024u * 1024u)
/* A control transfer's data stage is bounded by wLength, a u16. */
#define UW_MAX_CONTROL_LEN     65535u
/* number_of_packets of an isochronous URB: the kernel's USBIP_MAX_ISO_PACKETS. */
#define UW_MAX_ISO_PACKETS     1024u
/* Largest isochronous packet: SuperSpeed 1024 bytes x 16 bursts x 3 (mult). */
#define UW_MAX_ISO_PACKET_LEN  49152u
/* Devices accepted in one OP_REP_DEVLIST by a client (usbip-host allows 16 busids; emulated
 * servers may have more). Bounds what a client walks before it trusts a device list. */
#define UW_MAX_DEVLIST_DEVICES 1024u
/* Largest negative errno accepted as a URB status (Linux MAX_ERRNO). */
#define UW_MAX_ERRNO           4095

/* ---- Limits on USB descriptors from a device or a server --------------------------------- */
#define UW_MAX_CONFIG_TOTAL_LEN 65535u /* wTotalLength is a u16 */
#define UW_MAX_INTERFACES       32u    /* interfaces per configuration (Linux USB_MAXINTERFACES) */
#define UW_MAX_ALTSETTINGS      128u /* alternate settings per interface (Linux USB_MAXALTSETTING) */
#define UW_MAX_ENDPOINTS        30u  /* endpoints per interface setting (15 IN + 15 OUT) */
#define UW_MAX_BOS_CAPS         64u  /* device capabilities walked in one BOS descriptor */

#endif /* UW_LIMITS_H */

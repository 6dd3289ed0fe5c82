/* SPDX-License-Identifier: MIT */
/*
 * uw_error.h - the one error type of usbwire.
 *
 * Every fallible function in every module returns 0 (UW_OK) or a negative uw_err. The list is an
 * X-macro so that names, messages and the documentation come from one table.
 */
#ifndef UW_ERROR_H
#define UW_ERROR_H

/* X(enum name, value, short name, message) */
#define UW_ERRORS(X)                                                                               \
	X(UW_OK, 0, "OK", "success")                                                               \
	X(UW_E_INVAL, -1, "INVAL", "invalid argument")                                             \
	X(UW_E_NOMEM, -2, "NOMEM", "out of memory")                                                \
	X(UW_E_PROTO, -3, "PROTO", "protocol error")                                               \
	X(UW_E_VERSION, -4, "VERSION", "unsupported USB/IP protocol version")                      \
	X(UW_E_LIMIT, -5, "LIMIT", "a limit was exceeded")                                         \
	X(UW_E_SHORT, -6, "SHORT", "buffer too short")                                             \
	X(UW_E_DESC, -7, "DESC", "malformed USB descriptor")                                       \
	X(UW_E_IO, -8, "IO", "input/output error")                                                 \
	X(UW_E_CLOSED, -9, "CLOSED", "connection closed by peer")                                  \
	X(UW_E_TIMEOUT, -10, "TIMEOUT", "operation timed out")                                     \
	X(UW_E_NODEV, -11, "NODEV", "no such device")                                              \
	X(UW_E_BUSY, -12, "BUSY", "device busy")                                                   \
	X(UW_E_DEVERR, -13, "DEVERR", "device in error state")                                     \
	X(UW_E_NOTSUP, -14, "NOTSUP", "operation not supported")                                   \
	X(UW_E_STALL, -15, "STALL", "endpoint stalled")                                            \
	X(UW_E_CANCELLED, -16, "CANCELLED", "request cancelled")                                   \
	X(UW_E_NOTFOUND, -17, "NOTFOUND", "not found")                                             \
	X(UW_E_EXISTS, -18, "EXISTS", "already exists")                                            \
	X(UW_E_ACCESS, -19, "ACCESS", "permission denied")                                         \
	X(UW_E_REFUSED, -20, "REFUSED", "request refused by peer")                                 \
	X(UW_E_STATE, -21, "STATE", "operation not valid in this state")                           \
	X(UW_E_OVERFLOW, -22, "OVERFLOW", "device sent more data than requested")

typedef enum uw_err {
#define UW_ERR_ENUM_(name, value, shortname, msg) name = value,
	UW_ERRORS(UW_ERR_ENUM_)
#undef UW_ERR_ENUM_
} uw_err;

/* Lowest (most negative) defined error value; anything below it is unknown. */
#define UW_ERR_MIN (-22)

/**
 * uw_strerror() - human-readable message for a uw_err.
 * Returns a static string; never NULL (unknown values give "unknown error"). Thread-safe.
 */
const char *uw_strerror(int err);

/**
 * uw_err_name() - the short symbolic name ("PROTO", "LIMIT", ...) of a uw_err.
 * Returns a static string; never NULL ("UNKNOWN" for values outside the table). Thread-safe.
 */
const char *uw_err_name(int err);

#endif /* UW_ERROR_H */

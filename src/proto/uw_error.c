/* SPDX-License-Identifier: MIT */
#include "uw_error.h"

#include <stddef.h>

struct err_entry {
	int value;
	const char *name;
	const char *msg;
};

static const struct err_entry err_table[] = {
#define UW_ERR_ROW_(name, value, shortname, msg) {value, shortname, msg},
    UW_ERRORS(UW_ERR_ROW_)
#undef UW_ERR_ROW_
};

static const struct err_entry *lookup(int err)
{
	/* Values are dense from 0 down to UW_ERR_MIN, in table order. */
	if (err > 0 || err < UW_ERR_MIN)
		return NULL;
	const struct err_entry *e = &err_table[-err];
	return e->value == err ? e : NULL;
}

const char *uw_strerror(int err)
{
	const struct err_entry *e = lookup(err);
	return e ? e->msg : "unknown error";
}

const char *uw_err_name(int err)
{
	const struct err_entry *e = lookup(err);
	return e ? e->name : "UNKNOWN";
}

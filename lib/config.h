/*
 * config.h - configuration from environment variables.
 *
 * Every setting has a default; a set but bad value is an error with a message
 * naming the variable, so a service refuses to start instead of running with a
 * half-understood configuration.
 */
#ifndef HEARTY_CONFIG_H
#define HEARTY_CONFIG_H

#include <stddef.h>
#include <stdint.h>

/* Reads integer variable name into *out: def when unset or empty. Returns 0, or
 * -1 with a message in err when it is not a decimal integer in [min, max]. */
int config_int(const char *name, int64_t def, int64_t min, int64_t max,
	       int64_t *out, char *err, size_t errlen);

/* Reads a string variable: def when unset or empty. The result is borrowed
 * from the environment or def; never NULL unless def is NULL. */
const char *config_str(const char *name, const char *def);

/* Reads an http:// base URL (no trailing slash wanted; one is stripped) into
 * out. Returns 0, or -1 with err when it does not start with http:// or is longer
 * than outlen - 1. */
int config_url(const char *name, const char *def, char *out, size_t outlen,
	       char *err, size_t errlen);

/* Parses a whole string as a decimal integer in [min, max]: no sign games, no
 * trailing bytes, no overflow. Returns 0 or -1. The one integer parser. */
int parse_int64(const char *text, int64_t min, int64_t max, int64_t *out);

#endif

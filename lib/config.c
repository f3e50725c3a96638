/* config.c - environment variables with defaults and bounds. */
#include "hearty.h"
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int parse_int64(const char *text, int64_t min, int64_t max, int64_t *out)
{
	char *end = NULL;
	long long v;

	if(!text || !*text || strlen(text) > 20)
		return -1;
	/* strtoll accepts leading spaces and '+': the contract does not. */
	if(!(text[0] == '-' || (text[0] >= '0' && text[0] <= '9')))
		return -1;
	errno = 0;
	v = strtoll(text, &end, 10);
	if(errno || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

const char *config_str(const char *name, const char *def)
{
	const char *v = getenv(name);
	return (v && *v) ? v : def;
}

int config_int(const char *name, int64_t def, int64_t min, int64_t max,
	       int64_t *out, char *err, size_t errlen)
{
	const char *v = getenv(name);

	if(!v || !*v) {
		*out = def;
		return 0;
	}
	if(parse_int64(v, min, max, out)) {
		snprintf(err, errlen, "%s=\"%.40s\" must be an integer from %lld to %lld",
			 name, v, (long long)min, (long long)max);
		return -1;
	}
	return 0;
}

int config_url(const char *name, const char *def, char *out, size_t outlen,
	       char *err, size_t errlen)
{
	const char *v = config_str(name, def);
	size_t len = strlen(v);

	if(strncmp(v, "http://", 7) != 0 || len <= 7 || len >= outlen) {
		snprintf(err, errlen, "%s=\"%.60s\" must be an http:// URL shorter than %zu bytes",
			 name, v, outlen);
		return -1;
	}
	memcpy(out, v, len + 1);
	while(len > 7 && out[len - 1] == '/')
		out[--len] = '\0';
	if(len <= 7) {
		snprintf(err, errlen, "%s=\"%.60s\" has no host", name, v);
		return -1;
	}
	return 0;
}

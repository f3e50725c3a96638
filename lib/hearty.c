/* hearty.c - error names and time helpers shared by every module. */
#include "hearty.h"

#include <stdio.h>
#include <time.h>

const char *hr_err_name(int err)
{
	static const char *const names[] = {
		"ok", "invalid", "not_found", "conflict", "nomem", "store",
		"connect", "timeout", "upstream", "rejected", "transient", "stopped",
		"open", "bulkhead", "deadline",
	};
	if(err < 0 || (size_t)err >= HR_ARRAY_LEN(names))
		return "unknown";
	return names[err];
}

int64_t hr_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t hr_mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void hr_deadline(int64_t ms, struct timespec *out)
{
	clock_gettime(CLOCK_REALTIME, out);
	out->tv_sec += (time_t)(ms / 1000);
	out->tv_nsec += (long)(ms % 1000) * 1000000L;
	if(out->tv_nsec >= 1000000000L) {
		out->tv_sec++;
		out->tv_nsec -= 1000000000L;
	}
}

void hr_time_iso(int64_t ms, char *buf, size_t buflen)
{
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	snprintf(buf, buflen, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

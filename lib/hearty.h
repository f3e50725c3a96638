/*
 * hearty.h - the first include of every source file in the project.
 *
 * It holds what every module shares: the error codes (one small enum, 0 for
 * success, mapped to HTTP status only in handlers), a few limits that are part
 * of the contract, and time helpers.
 */
#ifndef HEARTY_H
#define HEARTY_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

/* Error codes. Each names the layer or kind of failure, so a handler can tell
 * "bad input" from "downstream down" from "store failed". */
enum hr_err {
	HR_OK = 0,
	HR_ERR_INVALID,          /* input failed validation */
	HR_ERR_NOT_FOUND,        /* no such row */
	HR_ERR_CONFLICT,         /* state forbids it, or a unique key is taken */
	HR_ERR_NOMEM,            /* allocation failed or a bound was hit */
	HR_ERR_STORE,            /* the database failed (I/O, corrupt, busy too long) */
	HR_ERR_CONNECT,          /* downstream refused or unreachable; request not sent */
	HR_ERR_TIMEOUT,          /* downstream too slow; the request may have been processed */
	HR_ERR_UPSTREAM,         /* downstream answered something unusable */
	HR_ERR_REJECTED,         /* an event a handler refuses for good: park it */
	HR_ERR_TRANSIENT,        /* try again later */
	HR_ERR_STOPPED,          /* the component is shutting down */
	HR_ERR_OPEN,             /* a dependency's circuit is open: not sent */
	HR_ERR_BULKHEAD,         /* too many calls to a dependency in flight: not sent */
	HR_ERR_DEADLINE,         /* the caller's deadline passed: not sent, or given up */
};

/* Returns a static name for an error code, for logs. */
const char *hr_err_name(int err);

/* Contract limits shared by services and tests (docs/api.md). */
#define HR_MAX_ID            9007199254740991LL /* 2^53 - 1: every id survives a JSON double exactly */
#define HR_LIST_DEFAULT      50
#define HR_LIST_MAX          500

/* Wall-clock milliseconds since the epoch. */
int64_t hr_now_ms(void);
/* Monotonic microseconds, for durations and deadlines. */
int64_t hr_mono_us(void);
/* The CLOCK_REALTIME time ms from now, for pthread_cond_timedwait. */
struct timespec;
void hr_deadline(int64_t ms, struct timespec *out);
/* Formats ms since the epoch as "2026-11-24T05:10:00.123Z" into buf (>= 32 bytes). */
void hr_time_iso(int64_t ms, char *buf, size_t buflen);

#define HR_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif

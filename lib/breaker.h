/*
 * breaker.h - a circuit breaker and bulkhead for one dependency (the
 * Hystrix model).
 *
 * Closed: calls go through; outcomes are counted in a rolling window of
 * buckets. When the window holds at least min_requests calls and the share of
 * errors (failures and timeouts) reaches error_percent, the breaker opens.
 * Open: calls are refused at once (short-circuited) for open_ms. Half-open:
 * up to `probes` trial calls go through; when that many have succeeded it
 * closes with a fresh window, and any failed probe opens it again.
 * Independently, at most max_concurrent calls may be in flight (the
 * bulkhead); calls over it are refused at once and counted as rejections, not
 * errors. State changes are logged; counts and state appear in /metrics.
 *
 * Time comes from a clock function (milliseconds, monotonic) so tests can
 * drive every transition without sleeping. Thread-safe.
 */
#ifndef HEARTY_BREAKER_H
#define HEARTY_BREAKER_H

#include <stddef.h>
#include <stdint.h>

struct breaker_config {
	int window_ms;          /* length of the rolling window */
	int buckets;            /* the window is counted in this many buckets */
	int min_requests;       /* calls in the window before the error rate counts */
	int error_percent;      /* open at or above this share of errors */
	int open_ms;            /* how long to refuse before probing */
	int probes;             /* trial calls in half-open; this many successes close it */
	int max_concurrent;     /* bulkhead: calls in flight at most */
};

enum breaker_state { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN };

/* What breaker_allow decided. */
enum breaker_permit {
	BREAKER_ALLOWED,        /* go ahead, then call breaker_record once */
	BREAKER_SHORT_CIRCUIT,  /* open (or half-open with its probes taken) */
	BREAKER_REJECTED,       /* the bulkhead is full */
};

enum breaker_outcome { BREAKER_SUCCESS, BREAKER_FAILURE, BREAKER_TIMEOUT };

/* What breaker_allow hands out and breaker_record takes back. The generation
 * ties an outcome to the state that allowed the call: a call that started
 * before the breaker opened and ends while it is half-open is counted, but
 * it is not a probe and moves nothing. */
struct breaker_ticket {
	int64_t retry_after_ms;   /* on BREAKER_SHORT_CIRCUIT: time left open (at least 1) */
	uint64_t generation;      /* private */
};

struct breaker;

/* Reads <PREFIX>_BREAKER_WINDOW_MS (10000), _BREAKER_BUCKETS (10),
 * _BREAKER_MIN_REQUESTS (20), _BREAKER_ERROR_PERCENT (50), _BREAKER_OPEN_MS
 * (5000), _BREAKER_PROBES (3) and <PREFIX>_MAX_CONCURRENT (128). Returns 0 or
 * -1 with err naming the variable. */
int breaker_config_from_env(const char *prefix, struct breaker_config *cfg, char *err, size_t errlen);

/* Creates a breaker for the dependency called name (copied; it labels logs
 * and metrics). clock may be NULL for the real monotonic clock. */
struct breaker *breaker_new(const char *name, const struct breaker_config *cfg, int64_t (*clock)(void));
void breaker_free(struct breaker *b);

/* Asks to make one call and fills ticket. */
enum breaker_permit breaker_allow(struct breaker *b, struct breaker_ticket *ticket);
/* Reports the outcome of an allowed call with its ticket (exactly once per
 * BREAKER_ALLOWED). */
void breaker_record(struct breaker *b, const struct breaker_ticket *ticket, enum breaker_outcome outcome);

enum breaker_state breaker_state(struct breaker *b);
/* Would a call be short-circuited now? If the breaker is open, counts one
 * short-circuited call and returns the milliseconds until it probes;
 * otherwise returns 0 and counts nothing (the call then goes through
 * breaker_allow as usual). Lets a caller take its fallback before doing any
 * work for the call. */
int64_t breaker_short_circuit_ms(struct breaker *b);

/* Counts since creation. */
struct breaker_counts {
	uint64_t successes, failures, timeouts, rejections, short_circuits;
};
void breaker_counts(struct breaker *b, struct breaker_counts *out);

#endif

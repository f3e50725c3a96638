/*
 * dependency.h - one synchronous dependency (payment, mileage, an upstream)
 * and the rules every call to it follows.
 *
 * A call has a budget: a connect timeout, a timeout per attempt and a total
 * deadline, the total never longer than what is left of the incoming
 * request's own deadline. The time left goes to the callee in a
 * Request-Deadline-Ms header. Calls pass through the dependency's circuit
 * breaker and bulkhead (breaker.h). Only calls marked safe to repeat (reads,
 * and writes idempotent by key or contract) are retried, and only on
 * failures: refused connections, timeouts, 5xx. Retries wait an exponential
 * back-off with full jitter, or the callee's Retry-After when it gives one,
 * and draw from a retry budget (a token bucket filled by a share of calls),
 * so retries never multiply an overload.
 */
#ifndef HEARTY_DEPENDENCY_H
#define HEARTY_DEPENDENCY_H

#include <jansson.h>
#include "breaker.h"
#include "client.h"

struct dependency_config {
	long connect_timeout_ms;     /* <DEP>_CONNECT_TIMEOUT_MS (default CONNECT_TIMEOUT_MS, 500) */
	long attempt_timeout_ms;     /* <DEP>_ATTEMPT_TIMEOUT_MS (default: the total) */
	long timeout_ms;             /* <DEP>_TIMEOUT_MS: total deadline of one call */
	int retries;                 /* <DEP>_RETRIES: extra attempts at most (2) */
	int backoff_ms;              /* <DEP>_BACKOFF_MS: first back-off ceiling (25) */
	int backoff_max_ms;          /* <DEP>_BACKOFF_MAX_MS (1000) */
	int retry_budget_percent;    /* <DEP>_RETRY_BUDGET_PERCENT: retries per 100 calls (20) */
	bool ignore_503;             /* a 503 is the callee's deliberate refusal: not a failure,
				      * and passed on rather than retried (the gateway: its
				      * upstreams answer 503 by design) */
	struct breaker_config breaker;
};

/* Reads the settings above for prefix ("PAYMENT") with default_timeout_ms as
 * the total deadline's default. Returns 0 or -1 with err. */
int dependency_config_from_env(const char *prefix, long default_timeout_ms,
			       struct dependency_config *cfg, char *err, size_t errlen);

struct dependency;

/* name labels logs and metrics ("payment"); base_url is copied. NULL on failure. */
struct dependency *dependency_new(const char *name, const char *base_url, const struct dependency_config *cfg);
void dependency_free(struct dependency *d);
const char *dependency_url(const struct dependency *d);
struct breaker *dependency_breaker(struct dependency *d);

struct dependency_result {
	int status;               /* the last answer's HTTP status, 0 when none */
	int retry_after_s;        /* when not sent (open circuit) or answered 503: how long to wait */
	int attempts;
	bool maybe_delivered;     /* some attempt may have been processed (timed out, broken
				   * mid-way, or a 5xx other than 503): unless a later answer
				   * settles it, the outcome is unknown */
	struct client_result res; /* the last answer; released by dependency_result_release */
};

/* Makes call (method, url, body, headers; its timeouts are set here) with the
 * rules above. Returns HR_OK when an answer arrived (any status: see
 * result.status), HR_ERR_OPEN or HR_ERR_BULKHEAD (refused here, nothing sent),
 * HR_ERR_DEADLINE (no time left to try), HR_ERR_CONNECT (never delivered),
 * or HR_ERR_TIMEOUT / HR_ERR_UPSTREAM (may have been processed). */
int dependency_call(struct dependency *d, struct client_call *call, bool safe,
		    struct dependency_result *result);
void dependency_result_release(struct dependency_result *result);

/* POSTs a JSON body (borrowed) to base_url + path and parses a JSON answer
 * into *answer (new reference, NULL when not JSON). Returns as dependency_call. */
int dependency_post_json(struct dependency *d, const char *path, json_t *body, bool safe,
			 struct dependency_result *result, json_t **answer);

#endif

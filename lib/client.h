/*
 * client.h - outbound HTTP calls between services, on libcurl.
 *
 * Each thread keeps one curl easy handle, so connections to a downstream are
 * reused across calls (keep-alive) without locking. Every call has a connect
 * timeout and a total timeout; the current request id is sent as X-Request-Id.
 * Failures are classified so callers can act on them: HR_ERR_CONNECT means the
 * request was never delivered; HR_ERR_TIMEOUT (too slow) and HR_ERR_UPSTREAM
 * (connection broken mid-way, answer too big) mean it may have been processed.
 */
#ifndef HEARTY_CLIENT_H
#define HEARTY_CLIENT_H

#include <stddef.h>
#include <jansson.h>
#include <stdatomic.h>
#include "buf.h"

struct client_call {
	const char *method;            /* "GET", "POST" */
	const char *url;               /* full URL */
	const char *body;              /* may be NULL */
	size_t body_len;
	const char *const *headers;    /* "Name: value" strings, NULL-terminated; may be NULL */
	long connect_timeout_ms;
	long timeout_ms;               /* total, connect included */
	size_t max_response;           /* cap on the response body */
	bool want_headers;             /* keep response headers in result.headers */
	const atomic_bool *cancel;     /* when it turns true the call gives up (within ~1 s); may be NULL */
};

struct client_result {
	int status;                    /* HTTP status, 0 when none arrived */
	struct buf body;               /* owned; release with client_result_release */
	struct buf headers;            /* raw header lines, when asked for */
	char error[128];               /* what went wrong, for logs */
};

/* Performs the call. Returns HR_OK when a response arrived (any status),
 * HR_ERR_CONNECT, HR_ERR_TIMEOUT, or HR_ERR_UPSTREAM (bad answer, too big).
 * The result is always initialised and must be released. */
int client_call(const struct client_call *call, struct client_result *res);
void client_result_release(struct client_result *res);

/* POSTs a JSON value (borrowed) and parses a JSON answer into *out (new
 * reference, or NULL when the answer is not JSON). Returns as client_call. */
int client_post_json(const char *url, json_t *body, long connect_ms, long timeout_ms,
		     int *status, json_t **out, char *err, size_t errlen);

/* Call once at process start, before threads: initialises libcurl. */
int client_global_init(void);

#endif

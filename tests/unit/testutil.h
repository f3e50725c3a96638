/*
 * testutil.h - helpers the unit suites share: temporary folders, free
 * loopback ports, one-shot HTTP calls with libcurl, bounded polling and
 * reading a metric back from the Prometheus text.
 */
#ifndef HEARTY_UNIT_TESTUTIL_H
#define HEARTY_UNIT_TESTUTIL_H

#include "hearty.h"
#include "buf.h"

#include <jansson.h>

/* Makes a new folder under $TMPDIR (or /tmp). Returns a malloc'd path, NULL on failure. */
char *tu_tmpdir(void);
/* Removes the files directly inside dir, then dir, and frees the path. NULL is a
 * no-op. With HEARTY_UNIT_KEEP_TMP set it keeps them and prints the path. */
void tu_rmdir(char *dir);
/* Joins dir and name into out. */
void tu_path(char *out, size_t outlen, const char *dir, const char *name);

/* A loopback port that was free a moment ago (bind 127.0.0.1:0, read it, close). */
int tu_free_port(void);

void tu_sleep_ms(int ms);
/* Calls pred(arg) until it is true or timeout_ms passes; returns its last answer. */
bool tu_wait_until(bool (*pred)(void *arg), void *arg, int timeout_ms);

/* One HTTP request. */
struct tu_request {
	const char *method;           /* "GET", "POST", ... */
	const char *url;
	const char *const *headers;   /* "Name: value", NULL-terminated; may be NULL */
	const char *body;             /* may be NULL */
	size_t body_len;
	bool chunked;                 /* send the body with Transfer-Encoding: chunked */
	long timeout_ms;              /* 0: 5000 */
};

struct tu_response {
	long status;                  /* 0 when no answer arrived */
	char *body;                   /* NUL-terminated, owned ("" when none) */
	size_t body_len;
	char *headers;                /* raw header lines of the final answer, owned */
	double secs;                  /* wall time of the call */
	json_t *json;                 /* the body parsed, or NULL */
};

/* Performs the request. Returns 0 when an answer arrived; the response is
 * always initialised and must be released. */
int tu_http(const struct tu_request *rq, struct tu_response *out);
/* Shorthand: GET url. */
int tu_get(const char *url, struct tu_response *out);
void tu_response_release(struct tu_response *r);
/* Copies the value of header name (case-insensitive) into out; false if absent. */
bool tu_header(const struct tu_response *r, const char *name, char *out, size_t outlen);

struct store;
/* The first column of the first row of sql (a literal), read with store_read.
 * Returns HR_OK, HR_ERR_NOT_FOUND when there is no row, or the store's error. */
int tu_store_int(struct store *st, const char *sql, int64_t *out);
/* The same for a text column, copied into out. */
int tu_store_text(struct store *st, const char *sql, char *out, size_t outlen);

/* Sums every series of metric name (any labels) in metrics_render's text. */
int64_t tu_metric_sum(const char *name);
/* The value of the one series written exactly as series (e.g. a{b="c"}); -1 if absent. */
int64_t tu_metric_series(const char *series);

#endif

/*
 * server.h - the HTTP server every service runs.
 *
 * libmicrohttpd with its own epoll threads (HTTP_THREADS, default 2) does the
 * socket work and never blocks. A finished request is suspended and handed to a
 * fixed pool of worker threads; handlers run there and may block on the store
 * or on a downstream call. The worker fills a response and resumes the
 * connection, and libmicrohttpd sends it on keep-alive. Requests queued or
 * running are bounded (max_inflight): above it the server answers 503 with
 * Retry-After at once instead of queueing without bound.
 *
 * Bodies are read up to max_body bytes (413 beyond), a non-empty body must be
 * JSON (415 otherwise) unless the route says it takes any body. The router
 * matches method + path pattern with {name} segments; a path that matches with
 * another method gets 405 and an Allow header. Every answer carries the
 * request id (X-Request-Id, taken from the caller when valid, made otherwise).
 */
#ifndef HEARTY_SERVER_H
#define HEARTY_SERVER_H

#include <jansson.h>
#include <stdint.h>
#include "buf.h"

struct server;
struct request;

#define RESPONSE_MAX_HEADERS 32

/* What a handler fills in. All memory is owned by the response. */
struct response {
	int status;                  /* 0 until set */
	char *body;                  /* malloc'd, owned */
	size_t body_len;
	char content_type[64];
	int nheaders;
	struct {
		char *name, *value;  /* malloc'd, owned */
	} headers[RESPONSE_MAX_HEADERS];
};

/* Sets a JSON body; body is stolen. */
void response_json(struct response *res, int status, json_t *body);
/* Sets the error shape {"error":{"code","message"}}. */
void response_error(struct response *res, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Sets a body of any type; body (malloc'd) is stolen. */
void response_body(struct response *res, int status, const char *content_type, char *body, size_t len);
/* Adds a header (copied). Returns 0, or -1 when the header table is full. */
int response_header(struct response *res, const char *name, const char *value);
/* Frees what a response owns; it is empty afterwards. For responses a handler
 * builds aside (the server releases the one it passed in). */
void response_release(struct response *res);
/* 503 unavailable with Retry-After: seconds (at least 1). */
void response_unavailable(struct response *res, int retry_after_s, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

typedef void (*route_handler)(struct request *req, struct response *res, void *ctx);

/* Request accessors. Everything returned is borrowed for the life of the call. */
const char *request_method(const struct request *req);
const char *request_path(const struct request *req);   /* raw, without the query */
const char *request_uri(const struct request *req);    /* raw path + "?" + query as received */
const char *request_body(const struct request *req, size_t *len);
const char *request_header(const struct request *req, const char *name);
const char *request_id(const struct request *req);
/* A {name} segment of the matched route, percent-decoded; NULL if none. */
const char *request_param(const struct request *req, const char *name);
/* Percent-decodes query parameter name into out. Returns 1 if present, 0 if
 * absent, -1 if it is longer than outlen - 1 or badly encoded. */
int request_query(const struct request *req, const char *name, char *out, size_t outlen);
/* Calls fn for every request header (gateway pass-through). */
void request_headers_each(const struct request *req,
			  void (*fn)(const char *name, const char *value, void *arg), void *arg);

/* The current request's deadline on this thread, as hr_mono_us() time, from
 * its Request-Deadline-Ms header; 0 when it has none (or outside a handler).
 * Outbound calls never wait past it (dependency.h). */
int64_t server_request_deadline_us(void);
/* When the current request on this thread arrived (hr_mono_us() time); 0
 * outside a handler. Call budgets count from here, so time spent queued for
 * a worker is part of them. */
int64_t server_request_started_us(void);

/* Fault injection, like a service mesh's fault filter: every request to a
 * non-probe route is delayed by delay_ms before any work, then aborted with
 * abort_status in abort_percent of cases; response_delay_ms holds the answer
 * back after the work is done (a lost or late answer). Off (zeros) by
 * default; for tests and demos. */
struct server_faults {
	int delay_ms;
	int abort_percent;
	int abort_status;
	int response_delay_ms;
};

struct server_options {
	const char *bind_addr;   /* numeric IPv4 or IPv6 address */
	int port;
	int http_threads;
	int workers;
	int max_inflight;
	int max_connections;
	size_t max_body;
	int idle_timeout_s;      /* keep-alive connections idle this long are closed */
	struct server_faults faults;
};

/* Reads the common server settings from the environment (README, Configuration;
 * FAULT_DELAY_MS, FAULT_ABORT_PERCENT, FAULT_ABORT_STATUS and
 * FAULT_RESPONSE_DELAY_MS for faults).
 * Returns 0, or -1 with err naming the bad variable. */
int server_options_from_env(struct server_options *opt, int default_port, char *err, size_t errlen);

/* Creates a server (not yet listening). Returns NULL with err set on failure. */
struct server *server_new(const struct server_options *opt, char *err, size_t errlen);

/* Route flags. */
#define ROUTE_ANY_BODY 1   /* skip the JSON content-type check (gateway) */
#define ROUTE_PREFIX   4   /* pattern is a path prefix, matched on segment boundaries */
#define ROUTE_INLINE   2   /* cheap and never blocks: run in the network thread (probes, metrics) */

/* Registers a route. method is "GET", "POST", ... or "*" for any; pattern is
 * "/orders/{orderId}/cancel"-style; with ROUTE_PREFIX it matches that path and
 * everything under it ("/" matches every path). Routes are tried in registration order. Call before
 * server_start. Returns 0 or -1 when the table is full. */
int server_route(struct server *srv, const char *method, const char *pattern,
		 route_handler fn, void *ctx, int flags);

/* Starts listening and the worker pool. Returns 0 or -1 with err. */
int server_start(struct server *srv, char *err, size_t errlen);
/* Stops accepting new connections and marks the server draining (readyz 503);
 * waits up to grace_ms for requests in flight. */
void server_drain(struct server *srv, int grace_ms);
/* True once server_drain was called. */
bool server_draining(const struct server *srv);
/* Stops everything and frees the server. NULL is a no-op. */
void server_free(struct server *srv);

#endif

/*
 * server.c - libmicrohttpd front end, router and worker pool.
 *
 * Life of a request: uri_log() allocates its state and keeps the raw URI; the
 * access handler returns on the first call without answering (answering there
 * makes libmicrohttpd 0.9.75 close keep-alive connections), collects the body,
 * routes it, and either answers at once (errors and ROUTE_INLINE routes) or
 * suspends the connection and queues the request for a worker. The worker runs
 * the handler, then resumes the connection; the next access-handler call
 * queues the response. request_done() frees the state.
 */
#include "hearty.h"
#include "server.h"
#include "config.h"
#include "log.h"
#include "metrics.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define MAX_ROUTES   48
#define MAX_PARAMS   4
#define PARAM_MAX    128
#define URI_MAX      4096

/* Status codes counted per route; anything else lands in "other". */
static const int counted_codes[] = { 200, 201, 400, 404, 405, 409, 413, 415, 422, 502, 503, 504, 500 };
#define NCODES (HR_ARRAY_LEN(counted_codes) + 1)

struct route {
	char method[8];
	char pattern[128];
	route_handler fn;
	void *ctx;
	int flags;
	_Atomic uint64_t count[NCODES];
	_Atomic uint64_t duration_us;
};

/* READ: collecting the body; DISCARD: the body passed max_body, the rest is
 * dropped and 413 goes out at its end (libmicrohttpd 0.9.75 refuses an answer
 * mid-upload); WORK: with a worker; READY: answer made; SENT: queued. */
enum phase { PHASE_READ, PHASE_DISCARD, PHASE_WORK, PHASE_READY, PHASE_SENT };

/* A client that keeps sending this much past max_body is cut off unanswered. */
#define DISCARD_MAX (4 * 1024 * 1024)

struct request {
	struct server *srv;
	struct MHD_Connection *conn;
	const char *method;              /* borrowed from libmicrohttpd */
	char *uri;                       /* raw, owned */
	char *path;                      /* raw path, owned */
	const char *query;               /* into uri, "" when none */
	struct buf body;
	enum phase phase;
	bool seen_first;
	size_t discarded;                /* body bytes dropped in PHASE_DISCARD */
	struct route *route;
	int nparams;
	const char *param_names[MAX_PARAMS];  /* into route->pattern, not NUL-ended at '}' */
	size_t param_name_len[MAX_PARAMS];
	char param_vals[MAX_PARAMS][PARAM_MAX];
	char rid[65];
	int64_t start_us;
	int64_t deadline_us;             /* from Request-Deadline-Ms; 0 when none */
	struct response res;
	struct request *next;            /* work queue link */
};

struct server {
	struct server_options opt;
	struct MHD_Daemon *daemon;
	struct route routes[MAX_ROUTES];
	int nroutes;
	struct route unmatched;          /* metrics for 404s and the like */

	pthread_mutex_t lock;
	pthread_cond_t work_cond;        /* a request was queued, or stopping */
	pthread_cond_t idle_cond;        /* inflight dropped to zero */
	struct request *head, *tail;
	int inflight;                    /* queued + running in workers */
	bool stopping;
	_Atomic bool draining;
	pthread_t *workers;
	int nworkers;
	MHD_socket quiesced_fd;          /* the listen socket after a drain; closed after stop */

	struct metric *m_shed, *m_inflight;
};

/* ---- responses ---------------------------------------------------------- */

static void response_set_type(struct response *res, const char *type)
{
	snprintf(res->content_type, sizeof(res->content_type), "%s", type);
}

void response_body(struct response *res, int status, const char *content_type, char *body, size_t len)
{
	free(res->body);
	res->status = status;
	res->body = body;
	res->body_len = body ? len : 0;
	response_set_type(res, content_type);
}

void response_json(struct response *res, int status, json_t *body)
{
	char *text = body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

	json_decref(body);
	if(!text) {
		response_error(res, 500, "internal", "could not encode the answer");
		return;
	}
	response_body(res, status, "application/json", text, strlen(text));
}

static void response_verror(struct response *res, int status, const char *code,
			    const char *fmt, va_list ap)
{
	char msg[512];
	json_t *body;
	char *text;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	body = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
	text = body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(body);
	if(!text)
		text = strdup("{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}");
	response_body(res, status, "application/json", text, text ? strlen(text) : 0);
}

void response_error(struct response *res, int status, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	response_verror(res, status, code, fmt, ap);
	va_end(ap);
}

void response_unavailable(struct response *res, int retry_after_s, const char *fmt, ...)
{
	char secs[16];
	va_list ap;

	va_start(ap, fmt);
	response_verror(res, 503, "unavailable", fmt, ap);
	va_end(ap);
	snprintf(secs, sizeof(secs), "%d", retry_after_s < 1 ? 1 : retry_after_s);
	response_header(res, "Retry-After", secs);
}

int response_header(struct response *res, const char *name, const char *value)
{
	char *n, *v;

	if(res->nheaders >= RESPONSE_MAX_HEADERS)
		return -1;
	n = strdup(name);
	v = strdup(value);
	if(!n || !v) {
		free(n);
		free(v);
		return -1;
	}
	res->headers[res->nheaders].name = n;
	res->headers[res->nheaders].value = v;
	res->nheaders++;
	return 0;
}

void response_release(struct response *res)
{
	free(res->body);
	res->body = NULL;
	for(int i = 0; i < res->nheaders; i++) {
		free(res->headers[i].name);
		free(res->headers[i].value);
	}
	res->nheaders = 0;
}

/* ---- request accessors -------------------------------------------------- */

const char *request_method(const struct request *req) { return req->method; }
const char *request_path(const struct request *req) { return req->path; }
const char *request_uri(const struct request *req) { return req->uri; }
const char *request_id(const struct request *req) { return req->rid; }

const char *request_body(const struct request *req, size_t *len)
{
	*len = req->body.len;
	return req->body.data ? req->body.data : "";
}

const char *request_header(const struct request *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

struct header_each {
	void (*fn)(const char *, const char *, void *);
	void *arg;
};

static enum MHD_Result header_each_cb(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct header_each *he = cls;
	he->fn(key, value ? value : "", he->arg);
	return MHD_YES;
}

void request_headers_each(const struct request *req,
			  void (*fn)(const char *name, const char *value, void *arg), void *arg)
{
	struct header_each he = { fn, arg };
	MHD_get_connection_values(req->conn, MHD_HEADER_KIND, header_each_cb, &he);
}

const char *request_param(const struct request *req, const char *name)
{
	size_t len = strlen(name);
	for(int i = 0; i < req->nparams; i++)
		if(req->param_name_len[i] == len && memcmp(req->param_names[i], name, len) == 0)
			return req->param_vals[i];
	return NULL;
}

static int hexval(char c)
{
	if(c >= '0' && c <= '9') return c - '0';
	if(c >= 'a' && c <= 'f') return c - 'a' + 10;
	if(c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

/* Percent-decodes src[0..len) into out (plus is a space in queries). Returns
 * 0, or -1 on a bad escape, an embedded NUL or when out is too small. */
static int pct_decode(const char *src, size_t len, bool plus_space, char *out, size_t outlen)
{
	size_t o = 0;
	for(size_t i = 0; i < len; i++) {
		char c = src[i];
		if(c == '%') {
			int hi, lo;
			if(i + 2 >= len)
				return -1;
			hi = hexval(src[i + 1]);
			lo = hexval(src[i + 2]);
			if(hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				return -1;
			c = (char)(hi * 16 + lo);
			i += 2;
		} else if(c == '+' && plus_space) {
			c = ' ';
		}
		if(o + 1 >= outlen)
			return -1;
		out[o++] = c;
	}
	out[o] = '\0';
	return 0;
}

int request_query(const struct request *req, const char *name, char *out, size_t outlen)
{
	size_t nlen = strlen(name);
	const char *p = req->query;

	while(*p) {
		const char *end = strchr(p, '&');
		const char *eq;
		size_t seg = end ? (size_t)(end - p) : strlen(p);

		eq = memchr(p, '=', seg);
		size_t klen = eq ? (size_t)(eq - p) : seg;
		if(klen == nlen && memcmp(p, name, nlen) == 0) {
			const char *v = eq ? eq + 1 : p + seg;
			size_t vlen = (size_t)(p + seg - v);
			return pct_decode(v, vlen, true, out, outlen) ? -1 : 1;
		}
		p += seg;
		if(*p == '&')
			p++;
	}
	return 0;
}

/* ---- routing ------------------------------------------------------------ */

/* Matches path against r's pattern, capturing {name} segments into req.
 * Returns true on a match. */
static bool route_match(const struct route *r, const char *path, struct request *req)
{
	const char *p = r->pattern, *s = path;
	int n = 0;

	if(r->flags & ROUTE_PREFIX) {
		size_t plen = strlen(r->pattern);
		if(plen == 1)
			return true;
		return strncmp(path, r->pattern, plen) == 0 && (path[plen] == '\0' || path[plen] == '/');
	}
	while(*p && *s) {
		if(*p != '/' || *s != '/')
			return false;
		p++;
		s++;
		const char *pend = strchrnul(p, '/');
		const char *send = strchrnul(s, '/');
		if(*p == '{') {
			if(send == s || n >= MAX_PARAMS)
				return false;
			req->param_names[n] = p + 1;
			req->param_name_len[n] = (size_t)(pend - p - 2);
			if(pct_decode(s, (size_t)(send - s), false, req->param_vals[n], PARAM_MAX))
				return false;
			n++;
		} else if(pend - p != send - s || memcmp(p, s, (size_t)(pend - p)) != 0) {
			return false;
		}
		p = pend;
		s = send;
	}
	if(*p || *s)
		return false;
	req->nparams = n;
	return true;
}

static bool method_matches(const struct route *r, const char *method)
{
	return r->method[0] == '*' || strcmp(r->method, method) == 0;
}

/* Finds the route for req. Exact routes come first: a path one of them knows
 * answers 405 for another method even when a prefix route would take it (the
 * gateway's catch-all must not swallow POST /healthz). On no match, fills a
 * 404 or 405 answer and returns NULL. */
static struct route *route_find(struct server *srv, struct request *req)
{
	char allow[64] = "";
	bool path_known = false;

	for(int pass = 0; pass < 2 && !path_known; pass++) {
		for(int i = 0; i < srv->nroutes; i++) {
			struct route *r = &srv->routes[i];
			if(((r->flags & ROUTE_PREFIX) != 0) != (pass == 1) || !route_match(r, req->path, req))
				continue;
			if(method_matches(r, req->method))
				return r;
			path_known = true;
			if(!strstr(allow, r->method) && strlen(allow) + strlen(r->method) + 3 < sizeof(allow)) {
				if(allow[0])
					strcat(allow, ", ");
				strcat(allow, r->method);
			}
		}
	}
	if(path_known) {
		response_error(&req->res, 405, "method_not_allowed", "%s is not allowed on %.200s",
			       req->method, req->path);
		response_header(&req->res, "Allow", allow);
	} else {
		response_error(&req->res, 404, "not_found", "no such resource: %.200s", req->path);
	}
	return NULL;
}

int server_route(struct server *srv, const char *method, const char *pattern,
		 route_handler fn, void *ctx, int flags)
{
	struct route *r;
	size_t plen = strlen(pattern);

	if(srv->nroutes >= MAX_ROUTES || strlen(method) >= sizeof(r->method) ||
	   plen >= sizeof(r->pattern))
		return -1;
	r = &srv->routes[srv->nroutes++];
	snprintf(r->method, sizeof(r->method), "%s", method);
	snprintf(r->pattern, sizeof(r->pattern), "%s", pattern);
	r->fn = fn;
	r->ctx = ctx;
	r->flags = flags;
	return 0;
}

/* ---- metrics and access log --------------------------------------------- */

static size_t code_index(int status)
{
	for(size_t i = 0; i < HR_ARRAY_LEN(counted_codes); i++)
		if(counted_codes[i] == status)
			return i;
	return NCODES - 1;
}

static void route_metrics(struct buf *out, const char *label, struct route *r)
{
	uint64_t total = 0;
	for(size_t i = 0; i < NCODES; i++) {
		uint64_t n = atomic_load_explicit(&r->count[i], memory_order_relaxed);
		total += n;
		if(!n)
			continue;
		if(i < NCODES - 1)
			buf_printf(out, "http_requests_total{route=\"%s\",code=\"%d\"} %llu\n", label,
				   counted_codes[i], (unsigned long long)n);
		else
			buf_printf(out, "http_requests_total{route=\"%s\",code=\"other\"} %llu\n", label,
				   (unsigned long long)n);
	}
	if(total)
		buf_printf(out, "http_request_duration_seconds_sum{route=\"%s\"} %.6f\n"
			   "http_request_duration_seconds_count{route=\"%s\"} %llu\n", label,
			   (double)atomic_load(&r->duration_us) / 1e6, label, (unsigned long long)total);
}

static void server_collect(struct buf *out, void *ctx)
{
	struct server *srv = ctx;
	char label[160];

	buf_puts(out, "# HELP http_requests_total Requests answered, by route and status.\n"
		 "# TYPE http_requests_total counter\n");
	for(int i = 0; i < srv->nroutes; i++) {
		snprintf(label, sizeof(label), "%s %s", srv->routes[i].method, srv->routes[i].pattern);
		route_metrics(out, label, &srv->routes[i]);
	}
	route_metrics(out, "unmatched", &srv->unmatched);
}

/* Counts and logs a finished answer. Runs in whichever thread made it. */
static void request_finish(struct request *req)
{
	struct route *r = req->route ? req->route : &req->srv->unmatched;
	int64_t us = hr_mono_us() - req->start_us;

	atomic_fetch_add_explicit(&r->count[code_index(req->res.status)], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&r->duration_us, (uint64_t)us, memory_order_relaxed);
	/* 503 is a deliberate answer (fallback, shedding): logged like success. */
	bool failed = req->res.status >= 500 && req->res.status != 503;

	if(log_enabled(LOG_INFO) || (failed && log_enabled(LOG_WARN))) {
		log_set_request_id(req->rid);
		log_event(failed ? LOG_WARN : LOG_INFO, "request",
			  json_pack("{s:s,s:s,s:i,s:I}", "method", req->method, "path", req->path,
				    "status", req->res.status, "us", (json_int_t)us));
		log_set_request_id(NULL);
	}
}

/* ---- request ids -------------------------------------------------------- */

static bool rid_valid(const char *s)
{
	size_t n = 0;
	for(; *s; s++, n++) {
		char c = *s;
		if(n >= 64 || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
				(c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
			return false;
	}
	return n > 0;
}

static void rid_make(char *out, size_t outlen)
{
	static __thread uint64_t state;
	if(!state) {
		if(getrandom(&state, sizeof(state), 0) != sizeof(state) || !state)
			state = (uint64_t)hr_mono_us() | 1;
	}
	/* xorshift64*: ids need to be unique, not unpredictable */
	state ^= state >> 12;
	state ^= state << 25;
	state ^= state >> 27;
	snprintf(out, outlen, "%016llx", (unsigned long long)(state * 2685821657736338717ULL));
}

/* ---- libmicrohttpd glue ------------------------------------------------- */

static enum MHD_Result queue_answer(struct request *req)
{
	struct MHD_Response *mr;
	enum MHD_Result ret;
	struct response *res = &req->res;

	if(!res->status)
		response_error(res, 500, "internal", "handler gave no answer");
	mr = MHD_create_response_from_buffer(res->body_len, res->body ? res->body : (void *)"",
					     res->body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	if(!mr)
		return MHD_NO;
	res->body = NULL; /* libmicrohttpd owns it now */
	if(res->content_type[0])
		MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE, res->content_type);
	MHD_add_response_header(mr, "X-Request-Id", req->rid);
	for(int i = 0; i < res->nheaders; i++)
		MHD_add_response_header(mr, res->headers[i].name, res->headers[i].value);
	ret = MHD_queue_response(req->conn, (unsigned int)res->status, mr);
	MHD_destroy_response(mr);
	req->phase = PHASE_SENT;
	return ret;
}

/* Answers now, from the libmicrohttpd thread. */
static enum MHD_Result answer_now(struct request *req)
{
	request_finish(req);
	return queue_answer(req);
}

static bool is_json_type(const char *ct)
{
	size_t n = strlen("application/json");
	if(!ct || strncasecmp(ct, "application/json", n) != 0)
		return false;
	return ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ';
}

static void body_too_big(struct request *req)
{
	response_error(&req->res, 413, "payload_too_large", "request body is larger than %zu bytes",
		       req->srv->opt.max_body);
}

static __thread int64_t current_deadline_us, current_started_us;

int64_t server_request_deadline_us(void)
{
	return current_deadline_us;
}

int64_t server_request_started_us(void)
{
	return current_started_us;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* Applies injected faults. Returns true when the request was aborted. */
static bool inject_faults(struct request *req)
{
	const struct server_faults *f = &req->srv->opt.faults;
	uint32_t roll = 0;

	if(f->delay_ms)
		sleep_ms(f->delay_ms);
	if(!f->abort_percent)
		return false;
	if(getrandom(&roll, sizeof(roll), 0) != sizeof(roll))
		roll = (uint32_t)hr_mono_us();
	if((int)(roll % 100) >= f->abort_percent)
		return false;
	response_error(&req->res, f->abort_status, "fault_injected", "fault injected (FAULT_ABORT_PERCENT)");
	if(f->abort_status == 503)
		response_header(&req->res, "Retry-After", "1");
	return true;
}

/* Runs a request's handler with the request id and deadline set for logs and
 * calls. Work for a caller that has already given up is not started. */
static void request_run(struct request *req)
{
	bool probe = req->route->flags & ROUTE_INLINE;

	log_set_request_id(req->rid);
	current_deadline_us = req->deadline_us;
	current_started_us = req->start_us;
	if(!probe && inject_faults(req)) {
		/* aborted by the fault filter */
	} else if(!probe && req->deadline_us && hr_mono_us() >= req->deadline_us) {
		response_error(&req->res, 503, "deadline_exceeded",
			       "the caller's deadline passed before the work started");
		response_header(&req->res, "Retry-After", "1");
	} else {
		req->route->fn(req, &req->res, req->route->ctx);
		if(!probe && req->srv->opt.faults.response_delay_ms)
			sleep_ms(req->srv->opt.faults.response_delay_ms);
	}
	current_deadline_us = 0;
	current_started_us = 0;
	log_set_request_id(NULL);
	request_finish(req);
}

/* Reserves a place for one more request in the work queue. */
static bool inflight_reserve(struct server *srv)
{
	bool ok;
	pthread_mutex_lock(&srv->lock);
	ok = srv->inflight < srv->opt.max_inflight && !srv->stopping;
	if(ok)
		srv->inflight++;
	metric_set(srv->m_inflight, srv->inflight);
	pthread_mutex_unlock(&srv->lock);
	return ok;
}

static void work_push(struct server *srv, struct request *req)
{
	pthread_mutex_lock(&srv->lock);
	req->next = NULL;
	if(srv->tail)
		srv->tail->next = req;
	else
		srv->head = req;
	srv->tail = req;
	pthread_cond_signal(&srv->work_cond);
	pthread_mutex_unlock(&srv->lock);
}

/* The body is complete: route, check, then answer or hand to a worker. */
static enum MHD_Result dispatch(struct request *req)
{
	struct server *srv = req->srv;
	const char *ct;

	req->route = route_find(srv, req);
	if(!req->route)
		return answer_now(req);
	ct = request_header(req, MHD_HTTP_HEADER_CONTENT_TYPE);
	if(req->body.len > 0 && !(req->route->flags & ROUTE_ANY_BODY) && !is_json_type(ct)) {
		response_error(&req->res, 415, "unsupported_media_type",
			       "request body must be application/json");
		return answer_now(req);
	}
	if(req->route->flags & ROUTE_INLINE) {
		request_run(req);
		return queue_answer(req);
	}
	if(!inflight_reserve(srv)) {
		metric_add(srv->m_shed, 1);
		response_unavailable(&req->res, 1, "server is at its limit of %d requests in flight",
				     srv->opt.max_inflight);
		return answer_now(req);
	}
	req->phase = PHASE_WORK;
	MHD_suspend_connection(req->conn);
	work_push(srv, req);
	return MHD_YES;
}

/* Headers are in: take the caller's request id and deadline, and refuse a
 * body announced too big. */
static enum MHD_Result first_call(struct request *req, struct MHD_Connection *conn, const char *method)
{
	const char *given = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
	const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	const char *deadline = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Request-Deadline-Ms");
	int64_t announced, ms;

	req->seen_first = true;
	req->conn = conn;
	req->method = method;
	if(given && rid_valid(given))
		snprintf(req->rid, sizeof(req->rid), "%s", given);
	if(deadline && parse_int64(deadline, 0, 3600000, &ms)) {
		response_error(&req->res, 400, "invalid_argument",
			       "Request-Deadline-Ms must be an integer from 0 to 3600000");
		return answer_now(req);
	}
	if(deadline)
		req->deadline_us = req->start_us + ms * 1000;
	if(cl && (parse_int64(cl, 0, INT64_MAX, &announced) || (uint64_t)announced > req->srv->opt.max_body)) {
		body_too_big(req);
		return answer_now(req);
	}
	return MHD_YES;
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *conn, const char *url,
				      const char *method, const char *version,
				      const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	struct request *req = *con_cls;

	if(!req)
		return MHD_NO;
	switch(req->phase) {
	case PHASE_READY:
		return queue_answer(req);
	case PHASE_WORK:
	case PHASE_SENT:
		*upload_data_size = 0; /* discard what follows an early answer */
		return MHD_YES;
	case PHASE_DISCARD:
		if(!*upload_data_size) {
			body_too_big(req);
			return answer_now(req);
		}
		req->discarded += *upload_data_size;
		*upload_data_size = 0;
		return req->discarded > DISCARD_MAX ? MHD_NO : MHD_YES;
	case PHASE_READ:
		break;
	}
	if(!req->seen_first)
		return first_call(req, conn, method);
	if(*upload_data_size) {
		if(buf_append(&req->body, upload_data, *upload_data_size)) {
			req->phase = PHASE_DISCARD;
			buf_release(&req->body);
		}
		*upload_data_size = 0;
		return MHD_YES;
	}
	return dispatch(req);
}

static void *uri_log(void *cls, const char *uri, struct MHD_Connection *conn)
{
	struct server *srv = cls;
	struct request *req = calloc(1, sizeof(*req));
	const char *q;
	size_t ulen = strnlen(uri, URI_MAX + 1);

	if(!req)
		return NULL;
	req->srv = srv;
	req->conn = conn;
	req->start_us = hr_mono_us();
	buf_init(&req->body, srv->opt.max_body);
	if(ulen > URI_MAX)
		ulen = URI_MAX;
	req->uri = strndup(uri, ulen);
	q = req->uri ? strchr(req->uri, '?') : NULL;
	req->path = req->uri ? strndup(req->uri, q ? (size_t)(q - req->uri) : ulen) : NULL;
	req->query = q ? q + 1 : "";
	if(!req->uri || !req->path) {
		free(req->uri);
		free(req->path);
		free(req);
		return NULL;
	}
	/* Headers are not parsed yet: the caller's request id is read on the first call. */
	rid_make(req->rid, sizeof(req->rid));
	return req;
}

static void request_done(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct request *req = *con_cls;

	if(!req)
		return;
	response_release(&req->res);
	buf_release(&req->body);
	free(req->uri);
	free(req->path);
	free(req);
	*con_cls = NULL;
}

/* ---- worker pool -------------------------------------------------------- */

static void *worker_main(void *arg)
{
	struct server *srv = arg;
	struct request *req;

	for(;;) {
		pthread_mutex_lock(&srv->lock);
		while(!srv->head && !srv->stopping)
			pthread_cond_wait(&srv->work_cond, &srv->lock);
		req = srv->head;
		if(!req) {
			pthread_mutex_unlock(&srv->lock);
			break;
		}
		srv->head = req->next;
		if(!srv->head)
			srv->tail = NULL;
		pthread_mutex_unlock(&srv->lock);

		request_run(req);
		req->phase = PHASE_READY;

		pthread_mutex_lock(&srv->lock);
		srv->inflight--;
		metric_set(srv->m_inflight, srv->inflight);
		if(srv->inflight == 0)
			pthread_cond_broadcast(&srv->idle_cond);
		pthread_mutex_unlock(&srv->lock);
		/* After this the libmicrohttpd thread may answer and free req. */
		MHD_resume_connection(req->conn);
	}
	return NULL;
}

/* ---- life cycle --------------------------------------------------------- */

int server_options_from_env(struct server_options *opt, int default_port, char *err, size_t errlen)
{
	int64_t port, threads, workers, inflight, conns, body, idle, delay, percent, status, late;

	if(config_int("PORT", default_port, 1, 65535, &port, err, errlen) ||
	   config_int("HTTP_THREADS", 2, 1, 64, &threads, err, errlen) ||
	   config_int("WORKERS", 128, 1, 1024, &workers, err, errlen) ||
	   config_int("MAX_INFLIGHT", 1024, 1, 1000000, &inflight, err, errlen) ||
	   config_int("MAX_CONNECTIONS", 4096, 16, 1000000, &conns, err, errlen) ||
	   config_int("MAX_BODY_BYTES", 65536, 1024, 64 * 1024 * 1024, &body, err, errlen) ||
	   config_int("IDLE_TIMEOUT_S", 60, 1, 3600, &idle, err, errlen) ||
	   config_int("FAULT_DELAY_MS", 0, 0, 600000, &delay, err, errlen) ||
	   config_int("FAULT_ABORT_PERCENT", 0, 0, 100, &percent, err, errlen) ||
	   config_int("FAULT_ABORT_STATUS", 503, 400, 599, &status, err, errlen) ||
	   config_int("FAULT_RESPONSE_DELAY_MS", 0, 0, 600000, &late, err, errlen))
		return -1;
	opt->faults.response_delay_ms = (int)late;
	opt->faults.delay_ms = (int)delay;
	opt->faults.abort_percent = (int)percent;
	opt->faults.abort_status = (int)status;
	opt->bind_addr = config_str("BIND_ADDR", "127.0.0.1");
	opt->port = (int)port;
	opt->http_threads = (int)threads;
	opt->workers = (int)workers;
	opt->max_inflight = (int)inflight;
	opt->max_connections = (int)conns;
	opt->max_body = (size_t)body;
	opt->idle_timeout_s = (int)idle;
	return 0;
}

struct server *server_new(const struct server_options *opt, char *err, size_t errlen)
{
	struct server *srv = calloc(1, sizeof(*srv));

	if(!srv) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	srv->opt = *opt;
	srv->quiesced_fd = MHD_INVALID_SOCKET;
	pthread_mutex_init(&srv->lock, NULL);
	pthread_cond_init(&srv->work_cond, NULL);
	pthread_cond_init(&srv->idle_cond, NULL);
	srv->m_shed = metrics_counter("http_shed_total", NULL,
				      "Requests refused with 503 because too many were in flight.");
	srv->m_inflight = metrics_gauge("http_inflight", NULL, "Requests queued or running in workers.");
	metrics_add_collector(server_collect, srv);
	return srv;
}

static int start_workers(struct server *srv, char *err, size_t errlen)
{
	pthread_attr_t attr;
	int rc = 0;

	srv->workers = calloc((size_t)srv->opt.workers, sizeof(pthread_t));
	if(!srv->workers) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	pthread_attr_init(&attr);
	/* Handlers are shallow; a small stack keeps many workers cheap. */
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for(int i = 0; i < srv->opt.workers; i++) {
		if(pthread_create(&srv->workers[i], &attr, worker_main, srv)) {
			snprintf(err, errlen, "could not start worker threads");
			rc = -1;
			break;
		}
		srv->nworkers++;
	}
	pthread_attr_destroy(&attr);
	return rc;
}

int server_start(struct server *srv, char *err, size_t errlen)
{
	struct sockaddr_in sa4;
	struct sockaddr_in6 sa6;
	const struct sockaddr *sa;
	unsigned int flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_TURBO | MHD_ALLOW_SUSPEND_RESUME;

	memset(&sa4, 0, sizeof(sa4));
	memset(&sa6, 0, sizeof(sa6));
	if(inet_pton(AF_INET, srv->opt.bind_addr, &sa4.sin_addr) == 1) {
		sa4.sin_family = AF_INET;
		sa4.sin_port = htons((uint16_t)srv->opt.port);
		sa = (const struct sockaddr *)&sa4;
	} else if(inet_pton(AF_INET6, srv->opt.bind_addr, &sa6.sin6_addr) == 1) {
		sa6.sin6_family = AF_INET6;
		sa6.sin6_port = htons((uint16_t)srv->opt.port);
		sa = (const struct sockaddr *)&sa6;
		flags |= MHD_USE_IPv6;
	} else {
		snprintf(err, errlen, "BIND_ADDR=\"%.60s\" is not a numeric IPv4 or IPv6 address",
			 srv->opt.bind_addr);
		return -1;
	}
	if(start_workers(srv, err, errlen))
		return -1;
	srv->daemon = MHD_start_daemon(flags, (uint16_t)srv->opt.port, NULL, NULL,
				       access_handler, srv,
				       MHD_OPTION_SOCK_ADDR, sa,
				       MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)srv->opt.http_threads,
				       MHD_OPTION_CONNECTION_LIMIT, (unsigned int)srv->opt.max_connections,
				       MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)srv->opt.idle_timeout_s,
				       MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
				       MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
				       MHD_OPTION_URI_LOG_CALLBACK, uri_log, srv,
				       MHD_OPTION_NOTIFY_COMPLETED, request_done, srv,
				       MHD_OPTION_END);
	if(!srv->daemon) {
		snprintf(err, errlen, "cannot listen on %s:%d (in use, or no permission)",
			 srv->opt.bind_addr, srv->opt.port);
		return -1;
	}
	return 0;
}

bool server_draining(const struct server *srv)
{
	return atomic_load(&srv->draining);
}

void server_drain(struct server *srv, int grace_ms)
{
	struct timespec until;
	MHD_socket fd;

	if(!srv || !srv->daemon || atomic_exchange(&srv->draining, true))
		return;
	/* Closing it now races libmicrohttpd's epoll threads (they may still
	 * remove it from their sets and abort on ENOENT): close after stop. */
	fd = MHD_quiesce_daemon(srv->daemon);
	srv->quiesced_fd = fd;
	hr_deadline(grace_ms, &until);
	pthread_mutex_lock(&srv->lock);
	while(srv->inflight > 0)
		if(pthread_cond_timedwait(&srv->idle_cond, &srv->lock, &until))
			break;
	pthread_mutex_unlock(&srv->lock);
}

void server_free(struct server *srv)
{
	if(!srv)
		return;
	metrics_remove_collector(server_collect, srv);
	pthread_mutex_lock(&srv->lock);
	srv->stopping = true;
	pthread_cond_broadcast(&srv->work_cond);
	pthread_mutex_unlock(&srv->lock);
	/* Workers finish what is queued, so no connection stays suspended. */
	for(int i = 0; i < srv->nworkers; i++)
		pthread_join(srv->workers[i], NULL);
	free(srv->workers);
	if(srv->daemon)
		MHD_stop_daemon(srv->daemon);
	if(srv->quiesced_fd != MHD_INVALID_SOCKET)
		close(srv->quiesced_fd);
	pthread_mutex_destroy(&srv->lock);
	pthread_cond_destroy(&srv->work_cond);
	pthread_cond_destroy(&srv->idle_cond);
	free(srv);
}

/* test_dependency.c - budgets, retries, the retry budget and the breaker around
 * outbound calls, against a real server on a free loopback port whose handlers
 * answer a programmed sequence of statuses, sleep, or echo what they received. */
#include "hearty.h"
#include "dependency.h"
#include "server.h"
#include "log.h"
#include "check.h"
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>

static char base[64];   /* http://127.0.0.1:<port> of the test server */

/* ---- handlers --------------------------------------------------------------- */

/* /seq answers script[i] to its i-th request (the last entry from then on);
 * a 503 with retry_after set carries Retry-After. */
#define SCRIPT_MAX 32
static struct {
	int status[SCRIPT_MAX];
	int retry_after[SCRIPT_MAX];
	int n;
	atomic_int hits;
} script;

/* Programs /seq: statuses, 0-terminated. */
static void script_set(const int *statuses)
{
	script.n = 0;
	for(int i = 0; statuses[i] && i < SCRIPT_MAX; i++) {
		script.status[i] = statuses[i];
		script.retry_after[i] = 0;
		script.n++;
	}
	atomic_store(&script.hits, 0);
}

static void h_seq(struct request *req, struct response *res, void *ctx)
{
	int i = atomic_fetch_add(&script.hits, 1);
	int k = i < script.n ? i : script.n - 1;
	int status = k >= 0 ? script.status[k] : 200;
	char ra[16];

	response_json(res, status, json_pack("{s:i,s:i}", "hit", i, "status", status));
	if(k >= 0 && script.retry_after[k] > 0) {
		snprintf(ra, sizeof(ra), "%d", script.retry_after[k]);
		response_header(res, "Retry-After", ra);
	}
}

/* /deadline echoes the Request-Deadline-Ms it received (-1 when absent). */
static void h_deadline(struct request *req, struct response *res, void *ctx)
{
	const char *v = request_header(req, "Request-Deadline-Ms");
	response_json(res, 200, json_pack("{s:I}", "deadline", (json_int_t)(v ? atoll(v) : -1)));
}

/* /sleep answers 200 after sleep_ms, recording the deadline it was given. */
static atomic_int sleep_ms = 1500;
static atomic_int sleep_hits;
static atomic_llong sleep_deadline;

static void h_sleep(struct request *req, struct response *res, void *ctx)
{
	const char *v = request_header(req, "Request-Deadline-Ms");

	atomic_store(&sleep_deadline, v ? atoll(v) : -1);
	atomic_fetch_add(&sleep_hits, 1);
	tu_sleep_ms(atomic_load(&sleep_ms));
	response_json(res, 200, json_pack("{s:b}", "slept", 1));
}

/* /proxy?to=<path>&pre=<ms> calls base + to through the dependency in ctx, as a
 * service handler would, after sleeping pre ms; it reports what came back. */
static struct dependency *proxy_dep;

static void h_proxy(struct request *req, struct response *res, void *ctx)
{
	struct dependency_result dr;
	struct client_call call = { .method = "GET" };
	char to[64] = "", pre[16] = "0", url[256];
	json_t *answer = NULL;
	int64_t start;
	int rc;

	request_query(req, "to", to, sizeof(to));
	request_query(req, "pre", pre, sizeof(pre));
	tu_sleep_ms(atoi(pre));
	snprintf(url, sizeof(url), "%s%s", base, to);
	call.url = url;
	start = hr_mono_us();
	rc = dependency_call(proxy_dep, &call, true, &dr);
	if(rc == HR_OK)
		answer = json_loadb(dr.res.body.data ? dr.res.body.data : "", dr.res.body.len, 0, NULL);
	response_json(res, 200, json_pack("{s:s,s:i,s:i,s:I,s:o?}", "rc", hr_err_name(rc),
					  "status", dr.status, "attempts", dr.attempts,
					  "ms", (json_int_t)((hr_mono_us() - start) / 1000), "answer", answer));
	dependency_result_release(&dr);
}

/* ---- fixtures --------------------------------------------------------------- */

static struct server *start_server(void)
{
	struct server_options opt = {
		.bind_addr = "127.0.0.1", .http_threads = 2, .workers = 12, .max_inflight = 64,
		.max_connections = 64, .max_body = 4096, .idle_timeout_s = 5,
	};
	char err[256] = "";
	struct server *srv;

	for(int attempt = 0; attempt < 5; attempt++) {
		opt.port = tu_free_port();
		srv = server_new(&opt, err, sizeof(err));
		if(!CHECK(srv != NULL))
			return NULL;
		CHECK_INT(server_route(srv, "*", "/seq", h_seq, NULL, 0), 0);
		CHECK_INT(server_route(srv, "GET", "/deadline", h_deadline, NULL, 0), 0);
		CHECK_INT(server_route(srv, "*", "/sleep", h_sleep, NULL, 0), 0);
		CHECK_INT(server_route(srv, "GET", "/proxy", h_proxy, NULL, 0), 0);
		if(server_start(srv, err, sizeof(err)) == 0) {
			snprintf(base, sizeof(base), "http://127.0.0.1:%d", opt.port);
			return srv;
		}
		server_free(srv);
	}
	CHECK(!"no server could start");
	printf("   %s\n", err);
	return NULL;
}

/* A configuration where only what a test sets matters: quick back-off, a
 * generous retry budget and a breaker that does not open. */
static struct dependency_config config(long total_ms, long attempt_ms, int retries)
{
	return (struct dependency_config){
		.connect_timeout_ms = 500, .attempt_timeout_ms = attempt_ms, .timeout_ms = total_ms,
		.retries = retries, .backoff_ms = 1, .backoff_max_ms = 5, .retry_budget_percent = 100,
		.ignore_503 = false,
		.breaker = { .window_ms = 10000, .buckets = 10, .min_requests = 1000000,
			     .error_percent = 50, .open_ms = 5000, .probes = 1, .max_concurrent = 64 },
	};
}

static struct dependency *make(const struct dependency_config *cfg, const char *url)
{
	struct dependency *d = dependency_new("unit-dep", url ? url : base, cfg);
	CHECK(d != NULL);
	return d;
}

/* One call of method to base + path; returns the code, fills r (release it)
 * and *secs with the wall time. */
static int do_call(struct dependency *d, const char *method, const char *path, bool safe,
		   struct dependency_result *r, double *secs)
{
	struct client_call call = { .method = method };
	char url[256];
	int64_t start = hr_mono_us();
	int rc;

	snprintf(url, sizeof(url), "%s%s", dependency_url(d), path);
	call.url = url;
	rc = dependency_call(d, &call, safe, r);
	if(secs)
		*secs = (double)(hr_mono_us() - start) / 1e6;
	return rc;
}

/* The same in a new thread: its own curl handle, so a fresh connection
 * (client.c keeps one handle, and its kept-alive connections, per thread). */
struct fresh_call {
	struct dependency *d;
	const char *method, *path;
	bool safe;
	struct dependency_result *r;
	double *secs;
	int rc;
};

static void *fresh_main(void *arg)
{
	struct fresh_call *fc = arg;
	fc->rc = do_call(fc->d, fc->method, fc->path, fc->safe, fc->r, fc->secs);
	return NULL;
}

static int fresh_call(struct dependency *d, const char *method, const char *path, bool safe,
		      struct dependency_result *r, double *secs)
{
	struct fresh_call fc = { d, method, path, safe, r, secs, -1 };
	pthread_t t;

	if(pthread_create(&t, NULL, fresh_main, &fc) != 0)
		return -1;
	pthread_join(t, NULL);
	return fc.rc;
}

static json_int_t body_int(const struct dependency_result *r, const char *key)
{
	json_t *j = json_loadb(r->res.body.data ? r->res.body.data : "", r->res.body.len, 0, NULL);
	json_int_t v = json_integer_value(json_object_get(j, key));

	if(!json_is_integer(json_object_get(j, key)))
		v = -999;
	json_decref(j);
	return v;
}

/* ---- retries ---------------------------------------------------------------- */

static void test_safe_retried(void)
{
	struct dependency_config cfg = config(3000, 1000, 2);
	struct dependency *d = make(&cfg, NULL);
	struct dependency_result r;
	struct breaker_counts c;

	/* 500, 500, 200: the third attempt succeeds. */
	script_set((const int[]){ 500, 500, 200, 0 });
	CHECK_INT(do_call(d, "GET", "/seq", true, &r, NULL), HR_OK);
	CHECK_INT(r.status, 200);
	CHECK_INT(r.attempts, 3);
	CHECK_INT(body_int(&r, "hit"), 2);
	CHECK_INT(atomic_load(&script.hits), 3);
	dependency_result_release(&r);
	breaker_counts(dependency_breaker(d), &c);
	CHECK_INT(c.failures, 2);
	CHECK_INT(c.successes, 1);

	/* Out of retries: the last answer is returned as it is. */
	script_set((const int[]){ 502, 0 });
	CHECK_INT(do_call(d, "GET", "/seq", true, &r, NULL), HR_OK);
	CHECK_INT(r.status, 502);
	CHECK_INT(r.attempts, 3);
	CHECK_INT(atomic_load(&script.hits), 3);
	dependency_result_release(&r);

	/* A safe POST (idempotent by key) is retried too. */
	script_set((const int[]){ 500, 201, 0 });
	CHECK_INT(do_call(d, "POST", "/seq", true, &r, NULL), HR_OK);
	CHECK_INT(r.status, 201);
	CHECK_INT(r.attempts, 2);
	dependency_result_release(&r);
	dependency_free(d);

	/* No retries configured: one attempt. */
	cfg.retries = 0;
	d = make(&cfg, NULL);
	script_set((const int[]){ 500, 200, 0 });
	CHECK_INT(do_call(d, "GET", "/seq", true, &r, NULL), HR_OK);
	CHECK_INT(r.status, 500);
	CHECK_INT(r.attempts, 1);
	dependency_result_release(&r);
	dependency_free(d);
}

static void test_unsafe_not_retried(void)
{
	struct dependency_config cfg = config(3000, 1000, 2);
	struct dependency *d = make(&cfg, NULL);
	struct dependency_result r;

	/* The 500 may have done the work: not repeated. */
	script_set((const int[]){ 500, 200, 0 });
	CHECK_INT(do_call(d, "POST", "/seq", false, &r, NULL), HR_OK);
	CHECK_INT(r.status, 500);
	CHECK_INT(r.attempts, 1);
	CHECK_INT(atomic_load(&script.hits), 1);
	dependency_result_release(&r);
	dependency_free(d);
}

static void test_connect_refused(void)
{
	struct dependency_config cfg = config(3000, 1000, 2);
	struct dependency *d;
	struct dependency_result r;
	struct breaker_counts c;
	char closed[64];
	double secs = 0;

	/* A port nobody listens on: the connection is refused, nothing delivered,
	 * so even an unsafe call is tried again. */
	snprintf(closed, sizeof(closed), "http://127.0.0.1:%d", tu_free_port());
	d = make(&cfg, closed);
	CHECK_INT(do_call(d, "POST", "/x", false, &r, &secs), HR_ERR_CONNECT);
	CHECK_INT(r.status, 0);
	CHECK_INT(r.attempts, 3);
	CHECK(secs < 1.5);
	dependency_result_release(&r);
	CHECK_INT(do_call(d, "GET", "/x", true, &r, NULL), HR_ERR_CONNECT);
	CHECK_INT(r.attempts, 3);
	dependency_result_release(&r);
	breaker_counts(dependency_breaker(d), &c);
	CHECK_INT(c.failures, 6);
	dependency_free(d);
}

static void test_4xx(void)
{
	struct dependency_config cfg = config(3000, 1000, 2);
	struct dependency *d;
	struct dependency_result r;
	struct breaker_counts c;

	/* Any error would open this breaker at once. */
	cfg.breaker.min_requests = 1;
	cfg.breaker.error_percent = 1;
	d = make(&cfg, NULL);
	static const int statuses[] = { 400, 404, 409, 422, 429 };
	for(size_t i = 0; i < HR_ARRAY_LEN(statuses); i++) {
		script_set((const int[]){ statuses[i], 200, 0 });
		CHECK_INT(do_call(d, "GET", "/seq", true, &r, NULL), HR_OK);
		if(!CHECK_INT(r.status, statuses[i]))
			printf("   status %d\n", statuses[i]);
		if(!CHECK_INT(r.attempts, 1))
			printf("   status %d\n", statuses[i]);
		CHECK_INT(atomic_load(&script.hits), 1);
		dependency_result_release(&r);
	}
	CHECK_INT(breaker_state(dependency_breaker(d)), BREAKER_CLOSED);
	breaker_counts(dependency_breaker(d), &c);
	CHECK_INT(c.successes, HR_ARRAY_LEN(statuses));
	CHECK_INT(c.failures, 0);
	dependency_free(d);
}

/* ---- deadlines -------------------------------------------------------------- */

static void test_deadline_header(void)
{
	struct dependency_config cfg = config(700, 700, 0);
	struct dependency *d = make(&cfg, NULL);
	struct dependency_result r;
	json_int_t got;

	/* The callee is told the time left, never more than the total. */
	CHECK_INT(do_call(d, "GET", "/deadline", true, &r, NULL), HR_OK);
	got = body_int(&r, "deadline");
	if(!CHECK(got > 500 && got <= 700))
		printf("   Request-Deadline-Ms %lld\n", (long long)got);
	dependency_result_release(&r);
	dependency_free(d);

	/* With a shorter attempt timeout, the attempt's time. */
	cfg = config(5000, 300, 0);
	d = make(&cfg, NULL);
	CHECK_INT(do_call(d, "GET", "/deadline", true, &r, NULL), HR_OK);
	got = body_int(&r, "deadline");
	if(!CHECK(got > 0 && got <= 300))
		printf("   Request-Deadline-Ms %lld\n", (long long)got);
	dependency_result_release(&r);
	dependency_free(d);
}

static void test_attempt_timeout(void)
{
	struct dependency_config cfg = config(3000, 300, 0);
	struct dependency *d = make(&cfg, NULL);
	struct dependency_result r;
	struct breaker_counts c;
	double secs = 0;
	int before;

	/* The callee takes 1.5 s; the attempt gives up at 300 ms. */
	atomic_store(&sleep_ms, 1500);
	CHECK_INT(fresh_call(d, "GET", "/sleep", true, &r, &secs), HR_ERR_TIMEOUT);
	CHECK_INT(r.status, 0);
	CHECK_INT(r.attempts, 1);
	if(!CHECK(secs >= 0.28 && secs < 0.9))
		printf("   took %.3f s\n", secs);
	CHECK(atomic_load(&sleep_deadline) > 0 && atomic_load(&sleep_deadline) <= 300);
	dependency_result_release(&r);
	breaker_counts(dependency_breaker(d), &c);
	CHECK_INT(c.timeouts, 1);
	CHECK_INT(c.failures, 0);

	/* An unsafe call that timed out may have been processed: not retried. */
	dependency_free(d);
	cfg.retries = 3;
	d = make(&cfg, NULL);
	before = atomic_load(&sleep_hits);
	CHECK_INT(fresh_call(d, "GET", "/sleep", false, &r, &secs), HR_ERR_TIMEOUT);
	CHECK_INT(r.attempts, 1);
	CHECK_INT(atomic_load(&sleep_hits) - before, 1);
	dependency_result_release(&r);
	dependency_free(d);
}

/* The same on a connection kept alive from an earlier call: the request was
 * delivered (the callee is working on it), so the timeout must not be taken
 * for a connect failure, and an unsafe call must not be sent again. */
static void test_timeout_on_reused_connection(void)
{
	struct dependency_config cfg = config(3000, 300, 2);
	struct dependency *d = make(&cfg, NULL);
	struct dependency_result r;
	struct breaker_counts c;
	int before;

	/* Warm this thread's connection to the server. */
	CHECK_INT(do_call(d, "GET", "/deadline", true, &r, NULL), HR_OK);
	dependency_result_release(&r);
	atomic_store(&sleep_ms, 1500);
	before = atomic_load(&sleep_hits);
	CHECK_INT(do_call(d, "POST", "/sleep", false, &r, NULL), HR_ERR_TIMEOUT);
	CHECK_INT(r.attempts, 1);
	if(!CHECK_INT(atomic_load(&sleep_hits) - before, 1))
		printf("   an unsafe request was delivered %d times\n", atomic_load(&sleep_hits) - before);
	dependency_result_release(&r);
	breaker_counts(dependency_breaker(d), &c);
	CHECK_INT(c.timeouts, 1);
	dependency_free(d);
}

static void test_total_timeout(void)
{
	struct dependency_config cfg;
	struct dependency *d;
	struct dependency_result r;
	double secs = 0;

	atomic_store(&sleep_ms, 1500);
	/* Attempts of 400 ms under a 1 s total: retried while there is time,
	 * never past the total. */
	cfg = config(1000, 400, 5);
	d = make(&cfg, NULL);
	CHECK_INT(fresh_call(d, "GET", "/sleep", true, &r, &secs), HR_ERR_TIMEOUT);
	CHECK(r.attempts >= 2 && r.attempts <= 3);
	if(!CHECK(secs >= 0.9 && secs < 1.3))
		printf("   took %.3f s in %d attempts\n", secs, r.attempts);
	dependency_result_release(&r);
	dependency_free(d);

	/* The attempt timeout defaults to the total: one attempt of 500 ms. */
	cfg = config(500, 500, 5);
	d = make(&cfg, NULL);
	CHECK_INT(fresh_call(d, "GET", "/sleep", true, &r, &secs), HR_ERR_TIMEOUT);
	CHECK_INT(r.attempts, 1);
	if(!CHECK(secs >= 0.45 && secs < 0.8))
		printf("   took %.3f s\n", secs);
	CHECK(atomic_load(&sleep_deadline) > 0 && atomic_load(&sleep_deadline) <= 500);
	dependency_result_release(&r);
	dependency_free(d);
}

/* The incoming request's deadline caps the call's total. */
static void test_incoming_deadline(void)
{
	static const char *const hdr[] = { "Request-Deadline-Ms: 400", NULL };
	struct dependency_config cfg = config(5000, 5000, 2);
	struct tu_request rq = { .method = "GET", .headers = hdr };
	struct tu_response tr;
	char url[256];
	json_t *answer;

	proxy_dep = make(&cfg, NULL);

	/* The callee is told what is left of the caller's 400 ms, not 5 s. */
	snprintf(url, sizeof(url), "%s/proxy?to=/deadline", base);
	rq.url = url;
	CHECK_INT(tu_http(&rq, &tr), 0);
	CHECK_INT(tr.status, 200);
	answer = json_object_get(tr.json, "answer");
	CHECK_STR(json_string_value(json_object_get(tr.json, "rc")), "ok");
	if(!CHECK(json_integer_value(json_object_get(answer, "deadline")) > 0 &&
		  json_integer_value(json_object_get(answer, "deadline")) <= 400))
		printf("   %s\n", tr.body);
	tu_response_release(&tr);

	/* A slow callee is given up on when the caller's deadline passes. */
	atomic_store(&sleep_ms, 1500);
	snprintf(url, sizeof(url), "%s/proxy?to=/sleep", base);
	CHECK_INT(tu_http(&rq, &tr), 0);
	CHECK_STR(json_string_value(json_object_get(tr.json, "rc")), "timeout");
	if(!CHECK(json_integer_value(json_object_get(tr.json, "ms")) < 700))
		printf("   %s\n", tr.body);
	CHECK(tr.secs < 1.0);
	tu_response_release(&tr);

	/* No time left at all: nothing is sent. */
	script_set((const int[]){ 200, 0 });
	snprintf(url, sizeof(url), "%s/proxy?to=/seq&pre=450", base);
	CHECK_INT(tu_http(&rq, &tr), 0);
	CHECK_STR(json_string_value(json_object_get(tr.json, "rc")), "deadline");
	CHECK_INT(json_integer_value(json_object_get(tr.json, "attempts")), 0);
	CHECK_INT(atomic_load(&script.hits), 0);
	tu_response_release(&tr);

	dependency_free(proxy_dep);
	proxy_dep = NULL;
}

/* ---- Retry-After ------------------------------------------------------------ */

static void test_retry_after(void)
{
	struct dependency_config cfg = config(3000, 3000, 2);
	struct dependency *d = make(&cfg, NULL);
	struct dependency_result r;
	double secs = 0;

	/* 503 with Retry-After: 1, then 200: the retry waits about a second. */
	script_set((const int[]){ 503, 200, 0 });
	script.retry_after[0] = 1;
	CHECK_INT(do_call(d, "GET", "/seq", true, &r, &secs), HR_OK);
	CHECK_INT(r.status, 200);
	CHECK_INT(r.attempts, 2);
	if(!CHECK(secs >= 0.95 && secs < 1.8))
		printf("   took %.3f s\n", secs);
	dependency_result_release(&r);
	dependency_free(d);

	/* A total shorter than the wait: no retry, the 503 and its wait come back. */
	cfg = config(800, 800, 2);
	d = make(&cfg, NULL);
	script_set((const int[]){ 503, 200, 0 });
	script.retry_after[0] = 1;
	CHECK_INT(do_call(d, "GET", "/seq", true, &r, &secs), HR_OK);
	CHECK_INT(r.status, 503);
	CHECK_INT(r.attempts, 1);
	CHECK_INT(r.retry_after_s, 1);
	CHECK_INT(atomic_load(&script.hits), 1);
	if(!CHECK(secs < 0.5))
		printf("   took %.3f s\n", secs);
	dependency_result_release(&r);

	/* A 503 without Retry-After is retried after the usual back-off. */
	script_set((const int[]){ 503, 200, 0 });
	CHECK_INT(do_call(d, "GET", "/seq", true, &r, &secs), HR_OK);
	CHECK_INT(r.status, 200);
	CHECK_INT(r.attempts, 2);
	CHECK(secs < 0.5);
	dependency_result_release(&r);
	dependency_free(d);
}

/* ---- the retry budget ------------------------------------------------------- */

static const char *const budget_vars[] = {
	"UNITBUD_RETRIES", "UNITBUD_RETRY_BUDGET_PERCENT", "UNITBUD_BACKOFF_MS",
	"UNITBUD_BACKOFF_MAX_MS", "UNITBUD_BREAKER_MIN_REQUESTS", "UNITBUD_TIMEOUT_MS",
};

/* Makes calls safe GETs to an always-500 /seq and checks the attempts of each. */
static void budget_run(struct dependency *d, const int *want, int n)
{
	struct dependency_result r;
	int total = 0;

	script_set((const int[]){ 500, 0 });
	for(int i = 0; i < n; i++) {
		CHECK_INT(do_call(d, "GET", "/seq", true, &r, NULL), HR_OK);
		if(!CHECK_INT(r.attempts, want[i]))
			printf("   call %d\n", i);
		total += want[i];
		dependency_result_release(&r);
	}
	CHECK_INT(atomic_load(&script.hits), total);
}

static void test_retry_budget(void)
{
	struct dependency_config cfg;
	struct dependency *d;
	char err[256] = "";

	setenv("UNITBUD_RETRIES", "10", 1);
	setenv("UNITBUD_RETRY_BUDGET_PERCENT", "0", 1);
	setenv("UNITBUD_BACKOFF_MS", "1", 1);
	setenv("UNITBUD_BACKOFF_MAX_MS", "2", 1);
	setenv("UNITBUD_BREAKER_MIN_REQUESTS", "1000000", 1);
	setenv("UNITBUD_TIMEOUT_MS", "5000", 1);
	if(!CHECK_INT(dependency_config_from_env("UNITBUD", 1000, &cfg, err, sizeof(err)), 0)) {
		printf("   %s\n", err);
		return;
	}

	/* The initial 10 tokens pay for 10 retries, then failing calls are tried once. */
	d = make(&cfg, NULL);
	budget_run(d, (const int[]){ 11, 1, 1, 1 }, 4);
	dependency_free(d);

	/* Fewer retries per call: the tokens run out over several calls. */
	cfg.retries = 3;
	d = make(&cfg, NULL);
	budget_run(d, (const int[]){ 4, 4, 4, 2, 1, 1 }, 6);
	dependency_free(d);

	/* 50%: every call adds half a token, so every second call may retry once. */
	cfg.retries = 10;
	cfg.retry_budget_percent = 50;
	d = make(&cfg, NULL);
	budget_run(d, (const int[]){ 11, 1, 2, 1, 2 }, 5);
	dependency_free(d);

	/* Successes fill the bucket up again (to at most 10). */
	d = make(&cfg, NULL);
	budget_run(d, (const int[]){ 11 }, 1);
	script_set((const int[]){ 200, 0 });
	for(int i = 0; i < 6; i++) {
		struct dependency_result r;
		CHECK_INT(do_call(d, "GET", "/seq", true, &r, NULL), HR_OK);
		dependency_result_release(&r);
	}
	/* 6 x 0.5 = 3 tokens, + 0.5: 3 retries; then 0.5 + 0.5: one more. */
	budget_run(d, (const int[]){ 4, 2 }, 2);
	dependency_free(d);

	for(size_t i = 0; i < HR_ARRAY_LEN(budget_vars); i++)
		unsetenv(budget_vars[i]);
}

/* ---- the breaker and the bulkhead ------------------------------------------- */

static void test_breaker_opens(void)
{
	struct dependency_config cfg = config(3000, 1000, 0);
	struct dependency *d;
	struct dependency_result r;
	struct breaker_counts c;
	double secs = 0;

	cfg.breaker.min_requests = 5;
	d = make(&cfg, NULL);
	script_set((const int[]){ 500, 0 });
	for(int i = 0; i < 5; i++) {
		CHECK_INT(do_call(d, "GET", "/seq", true, &r, NULL), HR_OK);
		CHECK_INT(r.status, 500);
		dependency_result_release(&r);
	}
	CHECK_INT(breaker_state(dependency_breaker(d)), BREAKER_OPEN);
	/* Refused here at once: the server is not reached. */
	CHECK_INT(do_call(d, "GET", "/seq", true, &r, &secs), HR_ERR_OPEN);
	CHECK_INT(r.attempts, 0);
	CHECK_INT(r.status, 0);
	CHECK(r.retry_after_s >= 1 && r.retry_after_s <= 5);
	CHECK(secs < 0.1);
	dependency_result_release(&r);
	CHECK_INT(do_call(d, "POST", "/seq", false, &r, NULL), HR_ERR_OPEN);
	dependency_result_release(&r);
	CHECK_INT(atomic_load(&script.hits), 5);
	breaker_counts(dependency_breaker(d), &c);
	CHECK_INT(c.short_circuits, 2);
	CHECK_INT(c.failures, 5);
	dependency_free(d);

	/* Refused connections and timeouts open it as well. */
	char closed[64];
	snprintf(closed, sizeof(closed), "http://127.0.0.1:%d", tu_free_port());
	d = make(&cfg, closed);
	for(int i = 0; i < 5; i++) {
		CHECK_INT(do_call(d, "GET", "/x", true, &r, NULL), HR_ERR_CONNECT);
		dependency_result_release(&r);
	}
	CHECK_INT(do_call(d, "GET", "/x", true, &r, NULL), HR_ERR_OPEN);
	CHECK(r.retry_after_s >= 1);
	dependency_result_release(&r);
	dependency_free(d);
}

static void test_ignore_503(void)
{
	struct dependency_config cfg = config(3000, 1000, 0);
	struct dependency *d;
	struct dependency_result r;
	struct breaker_counts c;

	/* By default a 503 is a failure and opens the breaker. */
	cfg.breaker.min_requests = 5;
	d = make(&cfg, NULL);
	script_set((const int[]){ 503, 0 });
	for(int i = 0; i < 5; i++) {
		CHECK_INT(do_call(d, "GET", "/seq", true, &r, NULL), HR_OK);
		dependency_result_release(&r);
	}
	CHECK_INT(do_call(d, "GET", "/seq", true, &r, NULL), HR_ERR_OPEN);
	dependency_result_release(&r);
	dependency_free(d);

	/* With ignore_503 it is the callee's answer, not its failure. */
	cfg.ignore_503 = true;
	d = make(&cfg, NULL);
	script_set((const int[]){ 503, 0 });
	for(int i = 0; i < 10; i++) {
		CHECK_INT(do_call(d, "GET", "/seq", true, &r, NULL), HR_OK);
		CHECK_INT(r.status, 503);
		dependency_result_release(&r);
	}
	CHECK_INT(atomic_load(&script.hits), 10);
	CHECK_INT(breaker_state(dependency_breaker(d)), BREAKER_CLOSED);
	breaker_counts(dependency_breaker(d), &c);
	CHECK_INT(c.successes, 10);
	CHECK_INT(c.failures, 0);
	/* Other 5xx still count. */
	script_set((const int[]){ 500, 0 });
	for(int i = 0; i < 10; i++) {
		CHECK_INT(do_call(d, "GET", "/seq", true, &r, NULL), HR_OK);
		dependency_result_release(&r);
	}
	CHECK_INT(breaker_state(dependency_breaker(d)), BREAKER_OPEN);   /* 10 of 20 */
	dependency_free(d);
}

struct bg_call {
	struct dependency *d;
	int rc;
};

static void *bg_main(void *arg)
{
	struct bg_call *bg = arg;
	struct dependency_result r;

	bg->rc = do_call(bg->d, "GET", "/sleep", true, &r, NULL);
	dependency_result_release(&r);
	return NULL;
}

static bool sleep_started(void *arg)
{
	return atomic_load(&sleep_hits) > *(int *)arg;
}

static void test_bulkhead(void)
{
	struct dependency_config cfg = config(3000, 3000, 2);
	struct bg_call bg = { 0 };
	struct dependency_result r;
	struct breaker_counts c;
	pthread_t t;
	int before = atomic_load(&sleep_hits);
	double secs = 0;

	cfg.breaker.max_concurrent = 1;
	bg.d = make(&cfg, NULL);
	atomic_store(&sleep_ms, 400);
	pthread_create(&t, NULL, bg_main, &bg);
	CHECK(tu_wait_until(sleep_started, &before, 2000));
	/* One call is in flight: the next is refused here, not queued or retried. */
	script_set((const int[]){ 200, 0 });
	CHECK_INT(do_call(bg.d, "GET", "/seq", true, &r, &secs), HR_ERR_BULKHEAD);
	CHECK_INT(r.attempts, 0);
	CHECK_INT(r.retry_after_s, 1);
	CHECK(secs < 0.1);
	CHECK_INT(atomic_load(&script.hits), 0);
	dependency_result_release(&r);
	pthread_join(t, NULL);
	CHECK_INT(bg.rc, HR_OK);
	/* The slot is free again. */
	CHECK_INT(do_call(bg.d, "GET", "/seq", true, &r, NULL), HR_OK);
	CHECK_INT(r.status, 200);
	dependency_result_release(&r);
	breaker_counts(dependency_breaker(bg.d), &c);
	CHECK_INT(c.rejections, 1);
	CHECK_INT(c.successes, 2);
	CHECK_INT(breaker_state(dependency_breaker(bg.d)), BREAKER_CLOSED);
	dependency_free(bg.d);
}

/* ---- JSON ------------------------------------------------------------------- */

static void test_post_json(void)
{
	struct dependency_config cfg = config(3000, 1000, 2);
	struct dependency *d = make(&cfg, NULL);
	struct dependency_result r;
	json_t *body = json_pack("{s:i}", "n", 1), *answer = NULL;

	script_set((const int[]){ 500, 201, 0 });
	CHECK_INT(dependency_post_json(d, "/seq", body, true, &r, &answer), HR_OK);
	CHECK_INT(r.status, 201);
	CHECK_INT(r.attempts, 2);
	CHECK_INT(json_integer_value(json_object_get(answer, "hit")), 1);
	json_decref(answer);
	dependency_result_release(&r);

	/* Unsafe: the 500 comes back with its body. */
	script_set((const int[]){ 500, 201, 0 });
	CHECK_INT(dependency_post_json(d, "/seq", body, false, &r, &answer), HR_OK);
	CHECK_INT(r.status, 500);
	CHECK_INT(r.attempts, 1);
	CHECK_INT(json_integer_value(json_object_get(answer, "status")), 500);
	json_decref(answer);
	dependency_result_release(&r);
	json_decref(body);
	dependency_free(d);
}

/* ---- configuration ---------------------------------------------------------- */

static const char *const dep_suffixes[] = {
	"_CONNECT_TIMEOUT_MS", "_ATTEMPT_TIMEOUT_MS", "_TIMEOUT_MS", "_RETRIES", "_BACKOFF_MS",
	"_BACKOFF_MAX_MS", "_RETRY_BUDGET_PERCENT", "_BREAKER_WINDOW_MS", "_BREAKER_BUCKETS",
	"_BREAKER_MIN_REQUESTS", "_BREAKER_ERROR_PERCENT", "_BREAKER_OPEN_MS", "_BREAKER_PROBES",
	"_MAX_CONCURRENT",
};

static void unset_dep(const char *prefix)
{
	char name[96];
	for(size_t i = 0; i < HR_ARRAY_LEN(dep_suffixes); i++) {
		snprintf(name, sizeof(name), "%s%s", prefix, dep_suffixes[i]);
		unsetenv(name);
	}
	unsetenv("CONNECT_TIMEOUT_MS");
}

static void test_config_from_env(void)
{
	struct dependency_config cfg;
	char err[256] = "";

	/* Defaults. */
	unset_dep("UNITDEP");
	memset(&cfg, 0xff, sizeof(cfg));
	CHECK_INT(dependency_config_from_env("UNITDEP", 1500, &cfg, err, sizeof(err)), 0);
	CHECK_INT(cfg.connect_timeout_ms, 500);
	CHECK_INT(cfg.timeout_ms, 1500);
	CHECK_INT(cfg.attempt_timeout_ms, 1500);     /* the total */
	CHECK_INT(cfg.retries, 2);
	CHECK_INT(cfg.backoff_ms, 25);
	CHECK_INT(cfg.backoff_max_ms, 1000);
	CHECK_INT(cfg.retry_budget_percent, 20);
	CHECK(!cfg.ignore_503);
	CHECK_INT(cfg.breaker.window_ms, 10000);
	CHECK_INT(cfg.breaker.buckets, 10);
	CHECK_INT(cfg.breaker.min_requests, 20);
	CHECK_INT(cfg.breaker.error_percent, 50);
	CHECK_INT(cfg.breaker.open_ms, 5000);
	CHECK_INT(cfg.breaker.probes, 3);
	CHECK_INT(cfg.breaker.max_concurrent, 128);

	/* The service-wide connect timeout is the default of the dependency's. */
	setenv("CONNECT_TIMEOUT_MS", "700", 1);
	setenv("UNITDEP_TIMEOUT_MS", "1234", 1);
	CHECK_INT(dependency_config_from_env("UNITDEP", 1500, &cfg, err, sizeof(err)), 0);
	CHECK_INT(cfg.connect_timeout_ms, 700);
	CHECK_INT(cfg.timeout_ms, 1234);
	CHECK_INT(cfg.attempt_timeout_ms, 1234);     /* follows the total set */

	setenv("UNITDEP_CONNECT_TIMEOUT_MS", "300", 1);
	setenv("UNITDEP_ATTEMPT_TIMEOUT_MS", "400", 1);
	setenv("UNITDEP_RETRIES", "0", 1);
	setenv("UNITDEP_BACKOFF_MS", "10", 1);
	setenv("UNITDEP_BACKOFF_MAX_MS", "90", 1);
	setenv("UNITDEP_RETRY_BUDGET_PERCENT", "100", 1);
	setenv("UNITDEP_BREAKER_PROBES", "2", 1);
	setenv("UNITDEP_MAX_CONCURRENT", "8", 1);
	setenv("OTHERDEP_RETRIES", "9", 1);
	CHECK_INT(dependency_config_from_env("UNITDEP", 1500, &cfg, err, sizeof(err)), 0);
	CHECK_INT(cfg.connect_timeout_ms, 300);
	CHECK_INT(cfg.timeout_ms, 1234);
	CHECK_INT(cfg.attempt_timeout_ms, 400);
	CHECK_INT(cfg.retries, 0);
	CHECK_INT(cfg.backoff_ms, 10);
	CHECK_INT(cfg.backoff_max_ms, 90);
	CHECK_INT(cfg.retry_budget_percent, 100);
	CHECK_INT(cfg.breaker.probes, 2);
	CHECK_INT(cfg.breaker.max_concurrent, 8);
	unsetenv("OTHERDEP_RETRIES");

	/* Bad values are refused, naming the variable. */
	static const struct { const char *var, *value; } bad[] = {
		{ "CONNECT_TIMEOUT_MS", "0" },
		{ "UNITDEP_CONNECT_TIMEOUT_MS", "fast" },
		{ "UNITDEP_TIMEOUT_MS", "0" },
		{ "UNITDEP_TIMEOUT_MS", "600001" },
		{ "UNITDEP_ATTEMPT_TIMEOUT_MS", "-5" },
		{ "UNITDEP_RETRIES", "11" },
		{ "UNITDEP_RETRIES", "two" },
		{ "UNITDEP_BACKOFF_MS", "0" },
		{ "UNITDEP_BACKOFF_MAX_MS", "1e3" },
		{ "UNITDEP_RETRY_BUDGET_PERCENT", "101" },
		{ "UNITDEP_BREAKER_ERROR_PERCENT", "0" },
		{ "UNITDEP_MAX_CONCURRENT", "0" },
	};
	for(size_t i = 0; i < HR_ARRAY_LEN(bad); i++) {
		unset_dep("UNITDEP");
		setenv(bad[i].var, bad[i].value, 1);
		err[0] = '\0';
		if(!CHECK_INT(dependency_config_from_env("UNITDEP", 1500, &cfg, err, sizeof(err)), -1))
			printf("   %s=\"%s\" was accepted\n", bad[i].var, bad[i].value);
		CHECK_CONTAINS(err, bad[i].var);
	}
	unset_dep("UNITDEP");
}

int main(void)
{
	struct server *srv;

	log_init("unit-dependency", LOG_ERROR);
	client_global_init();
	RUN(test_config_from_env);
	srv = start_server();
	if(srv) {
		RUN(test_safe_retried);
		RUN(test_unsafe_not_retried);
		RUN(test_connect_refused);
		RUN(test_4xx);
		RUN(test_deadline_header);
		RUN(test_attempt_timeout);
		RUN(test_timeout_on_reused_connection);
		RUN(test_total_timeout);
		RUN(test_incoming_deadline);
		RUN(test_retry_after);
		RUN(test_retry_budget);
		RUN(test_breaker_opens);
		RUN(test_ignore_503);
		RUN(test_bulkhead);
		RUN(test_post_json);
	}
	server_free(srv);
	return check_done();
}

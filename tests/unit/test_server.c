/* test_server.c - the router and the request pipeline through a real server
 * on a free loopback port, driven with libcurl as a client would. */
#include "hearty.h"
#include "server.h"
#include "log.h"
#include "metrics.h"
#include "check.h"
#include "testutil.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>

#define MAX_BODY 1024

static char base[64];        /* http://127.0.0.1:<port> of the main server */
static char slow_base[64];   /* the server with one worker and one slot */

/* ---- handlers -------------------------------------------------------------- */

/* Echoes the route parameters and what the handler sees of the request. */
static void h_echo(struct request *req, struct response *res, void *ctx)
{
	size_t len = 0;
	const char *body = request_body(req, &len);

	response_json(res, 200, json_pack("{s:s?,s:s?,s:s?,s:s?,s:s,s:s,s:s,s:I,s:s%,s:s,s:s}",
					  "id", request_param(req, "id"),
					  "x", request_param(req, "x"),
					  "y", request_param(req, "y"),
					  "missing", request_param(req, "missing"),
					  "method", request_method(req),
					  "path", request_path(req),
					  "uri", request_uri(req),
					  "len", (json_int_t)len,
					  "body", body, len,
					  "rid", request_id(req),
					  "logRid", log_request_id()));
}

/* Reports request_query for a fixed set of names, with an 8-byte out. */
static void h_query(struct request *req, struct response *res, void *ctx)
{
	static const char *const names[] = { "a", "b", "c", "d", "e", "missing", "long", "bad", "nul", "A" };
	json_t *o = json_object();

	for(size_t i = 0; i < HR_ARRAY_LEN(names); i++) {
		char out[8];
		int rc = request_query(req, names[i], out, sizeof(out));
		json_object_set_new(o, names[i], rc == 1 ? json_string(out) : json_integer(rc));
	}
	response_json(res, 200, o);
}

static void h_slow(struct request *req, struct response *res, void *ctx)
{
	atomic_int *running = ctx;
	atomic_fetch_add(running, 1);
	tu_sleep_ms(300);
	response_json(res, 200, json_pack("{s:b}", "slow", 1));
}

/* Sets no answer at all: the server must still reply. */
static void h_silent(struct request *req, struct response *res, void *ctx)
{
}

static void h_inline(struct request *req, struct response *res, void *ctx)
{
	response_json(res, 200, json_pack("{s:b}", "inline", 1));
	response_header(res, "X-Extra", "yes");
}

static void h_prefix(struct request *req, struct response *res, void *ctx)
{
	response_json(res, 200, json_pack("{s:s,s:s}", "prefix", "static", "path", request_path(req)));
}

/* ---- fixtures -------------------------------------------------------------- */

static struct server *start_server(char *url, size_t urllen, int workers, int max_inflight,
				   void (*routes)(struct server *, void *), void *ctx)
{
	struct server_options opt = {
		.bind_addr = "127.0.0.1", .http_threads = 2, .workers = workers,
		.max_inflight = max_inflight, .max_connections = 64, .max_body = MAX_BODY,
		.idle_timeout_s = 5,
	};
	char err[256] = "";
	struct server *srv;

	for(int attempt = 0; attempt < 5; attempt++) {
		opt.port = tu_free_port();
		srv = server_new(&opt, err, sizeof(err));
		if(!CHECK(srv != NULL))
			return NULL;
		routes(srv, ctx);
		if(server_start(srv, err, sizeof(err)) == 0) {
			snprintf(url, urllen, "http://127.0.0.1:%d", opt.port);
			return srv;
		}
		/* The port was taken between the probe and the bind: try another. */
		server_free(srv);
	}
	CHECK(!"no server could start");
	printf("   %s\n", err);
	return NULL;
}

static void main_routes(struct server *srv, void *ctx)
{
	CHECK_INT(server_route(srv, "GET", "/items/{id}", h_echo, NULL, 0), 0);
	CHECK_INT(server_route(srv, "PUT", "/items/{id}", h_echo, NULL, 0), 0);
	CHECK_INT(server_route(srv, "POST", "/items", h_echo, NULL, 0), 0);
	CHECK_INT(server_route(srv, "POST", "/raw", h_echo, NULL, ROUTE_ANY_BODY), 0);
	CHECK_INT(server_route(srv, "GET", "/a/{x}/b/{y}", h_echo, NULL, 0), 0);
	CHECK_INT(server_route(srv, "GET", "/q", h_query, NULL, 0), 0);
	CHECK_INT(server_route(srv, "GET", "/silent", h_silent, NULL, 0), 0);
	CHECK_INT(server_route(srv, "GET", "/inline", h_inline, NULL, ROUTE_INLINE), 0);
	CHECK_INT(server_route(srv, "GET", "/static", h_prefix, NULL, ROUTE_PREFIX), 0);
	CHECK_INT(server_route(srv, "*", "/any", h_echo, NULL, 0), 0);
}

static atomic_int slow_running;

static void slow_routes(struct server *srv, void *ctx)
{
	CHECK_INT(server_route(srv, "GET", "/slow", h_slow, ctx, 0), 0);
}

/* ---- request helpers ------------------------------------------------------- */

static void url_of(char *out, size_t outlen, const char *path)
{
	snprintf(out, outlen, "%s%s", base, path);
}

/* GET base+path; returns the status (0 when no answer). */
static long get(const char *path, struct tu_response *r)
{
	char url[4200];
	url_of(url, sizeof(url), path);
	tu_get(url, r);
	return r->status;
}

static long send_req(const char *method, const char *path, const char *const *headers,
		     const char *body, size_t len, bool chunked, struct tu_response *r)
{
	char url[256];
	struct tu_request rq = { .method = method, .url = url, .headers = headers, .body = body,
				 .body_len = len, .chunked = chunked };
	url_of(url, sizeof(url), path);
	tu_http(&rq, r);
	return r->status;
}

static const char *jstr(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static const char *error_code(const struct tu_response *r)
{
	return jstr(json_object_get(r->json, "error"), "code");
}

/* ---- tests ----------------------------------------------------------------- */

static void test_route_params(void)
{
	struct tu_response r;

	CHECK_INT(get("/items/42", &r), 200);
	CHECK_STR(jstr(r.json, "id"), "42");
	CHECK_STR(jstr(r.json, "path"), "/items/42");
	CHECK(json_is_null(json_object_get(r.json, "missing")));
	tu_response_release(&r);

	/* Parameters are percent-decoded; plus is not a space in a path. */
	CHECK_INT(get("/items/a%20b+c%2Fd%C3%A9", &r), 200);
	CHECK_STR(jstr(r.json, "id"), "a b+c/dé");
	CHECK_STR(jstr(r.json, "path"), "/items/a%20b+c%2Fd%C3%A9");   /* the raw path */
	tu_response_release(&r);

	CHECK_INT(get("/a/1/b/x%41y", &r), 200);
	CHECK_STR(jstr(r.json, "x"), "1");
	CHECK_STR(jstr(r.json, "y"), "xAy");
	tu_response_release(&r);

	/* Bad escapes, an encoded NUL and empty segments match nothing. */
	static const char *const unmatched[] = {
		"/items/%zz", "/items/%4", "/items/%00", "/items/", "/items/1/extra",
		"/a//b/2", "/a/1/b/", "/items//", "/ITEMS/1", "/nope",
	};
	for(size_t i = 0; i < HR_ARRAY_LEN(unmatched); i++) {
		if(!CHECK_INT(get(unmatched[i], &r), 404))
			printf("   path %s\n", unmatched[i]);
		CHECK_STR(error_code(&r), "not_found");
		tu_response_release(&r);
	}

	/* A parameter longer than the router keeps (127 bytes) is no match either. */
	char path[300] = "/items/";
	memset(path + 7, 'p', 127);
	path[134] = '\0';
	CHECK_INT(get(path, &r), 200);
	CHECK_INT(strlen(jstr(r.json, "id")), 127);
	tu_response_release(&r);
	memset(path + 7, 'p', 128);
	path[135] = '\0';
	CHECK_INT(get(path, &r), 404);
	tu_response_release(&r);

	/* Prefix routes match on segment boundaries. */
	CHECK_INT(get("/static", &r), 200);
	tu_response_release(&r);
	CHECK_INT(get("/static/css/site.css", &r), 200);
	CHECK_STR(jstr(r.json, "path"), "/static/css/site.css");
	tu_response_release(&r);
	CHECK_INT(get("/staticx", &r), 404);
	tu_response_release(&r);

	/* A "*" route takes every method. */
	CHECK_INT(send_req("DELETE", "/any", NULL, NULL, 0, false, &r), 200);
	CHECK_STR(jstr(r.json, "method"), "DELETE");
	tu_response_release(&r);
}

static void test_404_405(void)
{
	struct tu_response r;
	char allow[64] = "";

	CHECK_INT(send_req("DELETE", "/items/7", NULL, NULL, 0, false, &r), 405);
	CHECK_STR(error_code(&r), "method_not_allowed");
	CHECK(tu_header(&r, "Allow", allow, sizeof(allow)));
	CHECK_STR(allow, "GET, PUT");
	tu_response_release(&r);

	CHECK_INT(send_req("PUT", "/items/7", NULL, NULL, 0, false, &r), 200);
	tu_response_release(&r);

	CHECK_INT(get("/items", &r), 405);
	CHECK(tu_header(&r, "Allow", allow, sizeof(allow)));
	CHECK_STR(allow, "POST");
	tu_response_release(&r);

	CHECK_INT(get("/nothing/here", &r), 404);
	CHECK_STR(error_code(&r), "not_found");
	CHECK(!tu_header(&r, "Allow", allow, sizeof(allow)));
	CHECK(tu_header(&r, "Content-Type", allow, sizeof(allow)));
	CHECK_STR(allow, "application/json");
	tu_response_release(&r);
}

static void test_body_limits(void)
{
	static const char *const json_ct[] = { "Content-Type: application/json", NULL };
	char *big = malloc(MAX_BODY + 600);
	struct tu_response r;

	memset(big, ' ', MAX_BODY + 600);
	big[0] = '{';
	big[MAX_BODY - 1] = '}';

	/* Exactly max_body is read; one byte more is 413, announced or streamed. */
	CHECK_INT(send_req("POST", "/items", json_ct, big, MAX_BODY, false, &r), 200);
	CHECK_INT(json_integer_value(json_object_get(r.json, "len")), MAX_BODY);
	tu_response_release(&r);
	CHECK_INT(send_req("POST", "/items", json_ct, big, MAX_BODY + 1, false, &r), 413);
	CHECK_STR(error_code(&r), "payload_too_large");
	tu_response_release(&r);
	CHECK_INT(send_req("POST", "/items", json_ct, big, MAX_BODY, true, &r), 200);
	CHECK_INT(json_integer_value(json_object_get(r.json, "len")), MAX_BODY);
	tu_response_release(&r);
	free(big);
}

static void test_chunked_too_big(void)
{
	static const char *const json_ct[] = { "Content-Type: application/json", NULL };
	char *big;
	struct tu_response r;

	/* Without a Content-Length the cap is hit mid-upload; answer_now() then
	 * calls MHD_queue_response, which libmicrohttpd refuses before the whole
	 * request is in, and the MHD_NO it returns closes the connection. */
	big = malloc(MAX_BODY + 600);
	memset(big, ' ', MAX_BODY + 600);
	big[0] = '{';
	CHECK_INT(send_req("POST", "/items", json_ct, big, MAX_BODY + 600, true, &r), 413);
	CHECK_STR(error_code(&r), "payload_too_large");
	tu_response_release(&r);
	free(big);
}

static void test_content_type(void)
{
	static const char *const text_ct[] = { "Content-Type: text/plain", NULL };
	static const char *const json_utf8[] = { "Content-Type: application/json; charset=utf-8", NULL };
	static const char *const json_upper[] = { "Content-Type: Application/JSON", NULL };
	static const char *const jsonx[] = { "Content-Type: application/jsonx", NULL };
	static const char *const form[] = { "Content-Type: application/x-www-form-urlencoded", NULL };
	struct tu_response r;

	CHECK_INT(send_req("POST", "/items", text_ct, "{}", 2, false, &r), 415);
	CHECK_STR(error_code(&r), "unsupported_media_type");
	tu_response_release(&r);
	CHECK_INT(send_req("POST", "/items", jsonx, "{}", 2, false, &r), 415);
	tu_response_release(&r);
	/* curl sends a form type with a plain POST body: still not JSON. */
	CHECK_INT(send_req("POST", "/items", form, "{}", 2, false, &r), 415);
	tu_response_release(&r);
	CHECK_INT(send_req("POST", "/items", json_utf8, "{\"k\":1}", 7, false, &r), 200);
	CHECK_STR(jstr(r.json, "body"), "{\"k\":1}");
	tu_response_release(&r);
	CHECK_INT(send_req("POST", "/items", json_upper, "{}", 2, false, &r), 200);
	tu_response_release(&r);
	/* An empty body needs no type; a route taking any body takes text. */
	CHECK_INT(send_req("POST", "/items", text_ct, NULL, 0, false, &r), 200);
	CHECK_INT(json_integer_value(json_object_get(r.json, "len")), 0);
	tu_response_release(&r);
	CHECK_INT(send_req("POST", "/raw", text_ct, "plain", 5, false, &r), 200);
	CHECK_STR(jstr(r.json, "body"), "plain");
	tu_response_release(&r);
}

static void test_query(void)
{
	struct tu_response r;

	CHECK_INT(get("/q?a=1%202&b=x+y&c=&d&long=12345678&bad=%G1&nul=a%00b&a=second&e=1234567", &r), 200);
	CHECK_STR(jstr(r.json, "a"), "1 2");       /* the first of repeated names */
	CHECK_STR(jstr(r.json, "b"), "x y");       /* plus is a space in a query */
	CHECK_STR(jstr(r.json, "c"), "");          /* present and empty */
	CHECK_STR(jstr(r.json, "d"), "");          /* present without "=" */
	CHECK_STR(jstr(r.json, "e"), "1234567");   /* exactly fits outlen - 1 */
	CHECK_INT(json_integer_value(json_object_get(r.json, "missing")), 0);
	CHECK_INT(json_integer_value(json_object_get(r.json, "long")), -1);   /* too long */
	CHECK_INT(json_integer_value(json_object_get(r.json, "bad")), -1);    /* bad escape */
	CHECK_INT(json_integer_value(json_object_get(r.json, "nul")), -1);    /* encoded NUL */
	CHECK_INT(json_integer_value(json_object_get(r.json, "A")), 0);       /* names are case-sensitive */
	tu_response_release(&r);

	/* Names must match whole: "aa" is not "a", and "%61" is not decoded in a name. */
	CHECK_INT(get("/q?aa=1&%61=2&b=%7e%7E", &r), 200);
	CHECK_INT(json_integer_value(json_object_get(r.json, "a")), 0);
	CHECK_STR(jstr(r.json, "b"), "~~");
	tu_response_release(&r);

	CHECK_INT(get("/q", &r), 200);
	CHECK_INT(json_integer_value(json_object_get(r.json, "a")), 0);
	tu_response_release(&r);
	CHECK_INT(get("/q?&&a=%41%", &r), 200);
	CHECK_INT(json_integer_value(json_object_get(r.json, "a")), -1);   /* truncated escape */
	tu_response_release(&r);

	/* The path of a request with a query is the path alone. */
	CHECK_INT(get("/items/5?x=1", &r), 200);
	CHECK_STR(jstr(r.json, "id"), "5");
	CHECK_STR(jstr(r.json, "path"), "/items/5");
	CHECK_STR(jstr(r.json, "uri"), "/items/5?x=1");
	tu_response_release(&r);
}

static bool is_generated_id(const char *s)
{
	if(strlen(s) != 16)
		return false;
	for(; *s; s++)
		if(!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return false;
	return true;
}

static void test_request_id(void)
{
	static const char *const given[] = { "X-Request-Id: abc-123_X.y", NULL };
	static const char *const bad[] = { "X-Request-Id: has space", NULL };
	char long_hdr[128], id1[80] = "", id2[80] = "";
	const char *const too_long[] = { long_hdr, NULL };
	struct tu_response r;

	/* A valid id is echoed, and the handler and its logs see it. */
	CHECK_INT(send_req("GET", "/items/1", given, NULL, 0, false, &r), 200);
	CHECK(tu_header(&r, "X-Request-Id", id1, sizeof(id1)));
	CHECK_STR(id1, "abc-123_X.y");
	CHECK_STR(jstr(r.json, "rid"), "abc-123_X.y");
	CHECK_STR(jstr(r.json, "logRid"), "abc-123_X.y");
	tu_response_release(&r);

	/* Without one, or with an unusable one, the server makes one. */
	CHECK_INT(get("/items/1", &r), 200);
	CHECK(tu_header(&r, "X-Request-Id", id1, sizeof(id1)));
	CHECK(is_generated_id(id1));
	CHECK_STR(jstr(r.json, "rid"), id1);
	tu_response_release(&r);
	CHECK_INT(get("/items/1", &r), 200);
	CHECK(tu_header(&r, "X-Request-Id", id2, sizeof(id2)));
	CHECK(is_generated_id(id2));
	CHECK(strcmp(id1, id2) != 0);
	tu_response_release(&r);

	CHECK_INT(send_req("GET", "/items/1", bad, NULL, 0, false, &r), 200);
	CHECK(tu_header(&r, "X-Request-Id", id1, sizeof(id1)));
	CHECK(is_generated_id(id1));
	tu_response_release(&r);

	/* 64 characters are kept, 65 are replaced. */
	snprintf(long_hdr, sizeof(long_hdr), "X-Request-Id: %064d", 0);
	CHECK_INT(send_req("GET", "/items/1", too_long, NULL, 0, false, &r), 200);
	CHECK(tu_header(&r, "X-Request-Id", id1, sizeof(id1)));
	CHECK_INT(strlen(id1), 64);
	tu_response_release(&r);
	snprintf(long_hdr, sizeof(long_hdr), "X-Request-Id: %065d", 0);
	CHECK_INT(send_req("GET", "/items/1", too_long, NULL, 0, false, &r), 200);
	CHECK(tu_header(&r, "X-Request-Id", id1, sizeof(id1)));
	CHECK(is_generated_id(id1));
	tu_response_release(&r);

	/* Errors made by the server itself carry the id too. */
	CHECK_INT(send_req("GET", "/nope", given, NULL, 0, false, &r), 404);
	CHECK(tu_header(&r, "X-Request-Id", id1, sizeof(id1)));
	CHECK_STR(id1, "abc-123_X.y");
	tu_response_release(&r);
}

static void test_misc_answers(void)
{
	struct tu_response r;
	char v[32];

	/* A handler that sets nothing is a 500, not a hang. */
	CHECK_INT(get("/silent", &r), 500);
	CHECK_STR(error_code(&r), "internal");
	tu_response_release(&r);

	CHECK_INT(get("/inline", &r), 200);
	CHECK(json_is_true(json_object_get(r.json, "inline")));
	CHECK(tu_header(&r, "X-Extra", v, sizeof(v)));
	CHECK_STR(v, "yes");
	tu_response_release(&r);
}

static void test_route_metrics(void)
{
	struct tu_response r;
	int64_t before = tu_metric_series("http_requests_total{route=\"GET /a/{x}/b/{y}\",code=\"200\"}");

	for(int i = 0; i < 3; i++) {
		CHECK_INT(get("/a/1/b/2", &r), 200);
		tu_response_release(&r);
	}
	CHECK_INT(tu_metric_series("http_requests_total{route=\"GET /a/{x}/b/{y}\",code=\"200\"}"),
		  (before < 0 ? 0 : before) + 3);
	CHECK(tu_metric_series("http_requests_total{route=\"unmatched\",code=\"404\"}") > 0);
}

/* ---- load shedding --------------------------------------------------------- */

#define SHED_CLIENTS 4

struct shed_client {
	pthread_barrier_t *go;
	long status;
	double secs;
	char retry_after[16];
};

static void *shed_client_main(void *arg)
{
	struct shed_client *c = arg;
	struct tu_response r;
	char url[128];

	snprintf(url, sizeof(url), "%s/slow", slow_base);
	pthread_barrier_wait(c->go);
	tu_get(url, &r);
	c->status = r.status;
	c->secs = r.secs;
	if(!tu_header(&r, "Retry-After", c->retry_after, sizeof(c->retry_after)))
		c->retry_after[0] = '\0';
	tu_response_release(&r);
	return NULL;
}

static void test_load_shedding(void)
{
	pthread_t threads[SHED_CLIENTS];
	struct shed_client clients[SHED_CLIENTS];
	pthread_barrier_t go;
	int ok = 0, shed = 0;
	int64_t shed0 = tu_metric_sum("http_shed_total");
	struct tu_response r;
	char url[128];

	pthread_barrier_init(&go, NULL, SHED_CLIENTS);
	for(int i = 0; i < SHED_CLIENTS; i++) {
		clients[i] = (struct shed_client){ .go = &go };
		pthread_create(&threads[i], NULL, shed_client_main, &clients[i]);
	}
	for(int i = 0; i < SHED_CLIENTS; i++)
		pthread_join(threads[i], NULL);
	pthread_barrier_destroy(&go);

	for(int i = 0; i < SHED_CLIENTS; i++) {
		struct shed_client *c = &clients[i];
		printf("   client %d: %ld in %.3f s\n", i, c->status, c->secs);
		if(c->status == 200) {
			ok++;
			CHECK(c->secs >= 0.29);
		} else if(c->status == 503) {
			shed++;
			CHECK_STR(c->retry_after, "1");
			CHECK(c->secs < 0.2);     /* refused at once, not after the slow one */
		}
	}
	/* One worker, one slot: exactly one ran, the rest were refused. */
	CHECK_INT(ok, 1);
	CHECK_INT(shed, SHED_CLIENTS - 1);
	CHECK_INT(atomic_load(&slow_running), 1);
	CHECK_INT(tu_metric_sum("http_shed_total") - shed0, SHED_CLIENTS - 1);

	/* The slot is free again afterwards. */
	snprintf(url, sizeof(url), "%s/slow", slow_base);
	CHECK_INT(tu_get(url, &r), 0);
	CHECK_INT(r.status, 200);
	tu_response_release(&r);
}

static void test_response_helpers(void)
{
	struct response res = { 0 };

	/* Built aside, released by the caller. */
	response_unavailable(&res, 0, "busy %d", 7);
	CHECK_INT(res.status, 503);
	CHECK_INT(res.nheaders, 1);
	CHECK_STR(res.headers[0].name, "Retry-After");
	CHECK_STR(res.headers[0].value, "1");      /* at least one second */
	CHECK_STR(res.body, "{\"error\":{\"code\":\"unavailable\",\"message\":\"busy 7\"}}");
	CHECK_STR(res.content_type, "application/json");
	for(int i = 1; i < RESPONSE_MAX_HEADERS; i++)
		CHECK_INT(response_header(&res, "X-N", "v"), 0);
	CHECK_INT(response_header(&res, "X-Full", "v"), -1);
	response_release(&res);
	CHECK_INT(res.nheaders, 0);
	CHECK(res.body == NULL);
	response_release(&res);
}

static void test_collector_after_free(void)
{
	struct server_options opt = {
		.bind_addr = "127.0.0.1", .port = 1, .http_threads = 1, .workers = 1,
		.max_inflight = 1, .max_connections = 16, .max_body = 1024, .idle_timeout_s = 1,
	};
	char err[128];
	struct server *srv;

	srv = server_new(&opt, err, sizeof(err));
	server_route(srv, "GET", "/x", h_inline, NULL, 0);
	server_free(srv);
	/* The collector still points at srv: ASan reports a heap-use-after-free here. */
	CHECK(tu_metric_sum("http_requests_total") >= 0);
}

int main(void)
{
	struct server *srv, *slow;

	log_init("unit-server", LOG_ERROR);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	RUN(test_response_helpers);
	srv = start_server(base, sizeof(base), 4, 64, main_routes, NULL);
	slow = start_server(slow_base, sizeof(slow_base), 1, 1, slow_routes, &slow_running);
	if(srv && slow) {
		RUN(test_route_params);
		RUN(test_404_405);
		RUN(test_body_limits);
		RUN(test_chunked_too_big);
		RUN(test_content_type);
		RUN(test_query);
		RUN(test_request_id);
		RUN(test_misc_answers);
		RUN(test_route_metrics);
		RUN(test_load_shedding);
	}
	/* Collectors of freed servers are not removed (see test_collector_after_free):
	 * render no metrics after this point. */
	server_free(slow);
	server_free(srv);
	RUN(test_collector_after_free);
	curl_global_cleanup();
	return check_done();
}

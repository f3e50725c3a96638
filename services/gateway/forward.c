/*
 * forward.c - proxying one request to its upstream.
 *
 * The body is passed as is, never parsed. Hop-by-hop headers (RFC 9110 7.6.1)
 * and the ones the transport recomputes are dropped in both directions.
 */
#include "hearty.h"
#include "gateway.h"
#include "dependency.h"
#include "log.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define MAX_FORWARD_HEADERS 64
#define RESPONSE_MAX (16 * 1024 * 1024)

static bool hop_by_hop(const char *name)
{
	static const char *const names[] = {
		"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "TE", "Trailer",
		"Transfer-Encoding", "Upgrade", "Host", "Content-Length", "Expect", "X-Request-Id", "Date",
		"Content-Type", "Server", "Request-Deadline-Ms",
	};
	for(size_t i = 0; i < HR_ARRAY_LEN(names); i++)
		if(strcasecmp(name, names[i]) == 0)
			return true;
	return false;
}

struct header_list {
	char *lines[MAX_FORWARD_HEADERS + 2];
	int n;
};

static void collect_header(const char *name, const char *value, void *arg)
{
	struct header_list *hl = arg;
	size_t len;

	/* Content-Type is hop-by-hop only on the way back (the server sets it). */
	if((hop_by_hop(name) && strcasecmp(name, "Content-Type") != 0) || hl->n >= MAX_FORWARD_HEADERS)
		return;
	len = strlen(name) + strlen(value) + 3;
	hl->lines[hl->n] = malloc(len);
	if(hl->lines[hl->n]) {
		snprintf(hl->lines[hl->n], len, "%s: %s", name, value);
		hl->n++;
	}
}

/* Copies the upstream's end-to-end headers (raw lines) into res. */
static void copy_response_headers(struct response *res, const struct buf *raw)
{
	const char *p = raw->data ? raw->data : "";

	while(*p) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);
		const char *colon = memchr(p, ':', len);
		char name[128], value[1024];

		if(colon && (size_t)(colon - p) < sizeof(name) && strncmp(p, "HTTP/", 5) != 0) {
			size_t nlen = (size_t)(colon - p);
			const char *v = colon + 1;
			size_t vlen = len - nlen - 1;
			memcpy(name, p, nlen);
			name[nlen] = '\0';
			while(vlen && (*v == ' ' || *v == '\t')) {
				v++;
				vlen--;
			}
			while(vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == ' '))
				vlen--;
			if(vlen < sizeof(value) && !hop_by_hop(name)) {
				memcpy(value, v, vlen);
				value[vlen] = '\0';
				response_header(res, name, value);
			}
		}
		p += len + (eol ? 1 : 0);
	}
}

/* Finds the upstream's Content-Type among the raw header lines. */
static void content_type_of(const struct buf *raw, char *out, size_t outlen)
{
	const char *p = raw->data ? strcasestr(raw->data, "\ncontent-type:") : NULL;
	size_t len;

	snprintf(out, outlen, "application/octet-stream");
	if(!p)
		return;
	p += strlen("\ncontent-type:");
	p += strspn(p, " \t");
	len = strcspn(p, "\r\n");
	if(len < outlen)
		snprintf(out, outlen, "%.*s", (int)len, p);
}

static void answer_upstream_failure(struct response *res, int rc, const struct gateway_route *r,
				    const struct dependency_result *dr)
{
	const char *error = dr->res.error[0] ? dr->res.error : hr_err_name(rc);

	log_event(LOG_WARN, "upstream failed", json_pack("{s:s,s:s}", "upstream", r->upstream, "error", error));
	if(rc == HR_ERR_OPEN || rc == HR_ERR_BULKHEAD)
		response_unavailable(res, dr->retry_after_s, "upstream for %s is unavailable (%s); retry later",
				     r->prefix, rc == HR_ERR_OPEN ? "circuit open" : "too many requests in flight");
	else if(rc == HR_ERR_TIMEOUT || rc == HR_ERR_DEADLINE)
		response_error(res, 504, "gateway_timeout", "upstream for %s did not answer in time",
			       r->prefix);
	else
		response_error(res, 502, "bad_gateway", "upstream for %s is unavailable: %s", r->prefix,
			       error);
}

/* Repeating is safe for reads and for writes that carry an idempotency key. */
static bool safe_to_repeat(struct request *req)
{
	const char *m = request_method(req);
	return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0 || strcmp(m, "OPTIONS") == 0 ||
	       request_header(req, "Idempotency-Key") != NULL;
}

void gateway_forward(struct request *req, struct response *res, void *ctx)
{
	const struct gateway_route *r = routes_match(ctx, request_path(req));
	struct header_list hl = { .n = 0 };
	struct client_call call = { 0 };
	struct dependency_result dr;
	char url[4096 + 300], ctype[64];
	size_t body_len, len;
	char *body;
	int rc;

	if(!r) {
		response_error(res, 404, "not_found", "no route for %.200s", request_path(req));
		return;
	}
	snprintf(url, sizeof(url), "%s%s", r->upstream, request_uri(req));
	request_headers_each(req, collect_header, &hl);
	call.method = request_method(req);
	call.url = url;
	call.body = request_body(req, &body_len);
	call.body_len = body_len;
	call.headers = (const char *const *)hl.lines;
	call.max_response = RESPONSE_MAX;
	rc = dependency_call(r->dep, &call, safe_to_repeat(req), &dr);
	for(int i = 0; i < hl.n; i++)
		free(hl.lines[i]);
	if(rc) {
		answer_upstream_failure(res, rc, r, &dr);
	} else {
		content_type_of(&dr.res.headers, ctype, sizeof(ctype));
		body = buf_detach(&dr.res.body, &len);
		response_body(res, dr.status, ctype, body, len);
		copy_response_headers(res, &dr.res.headers);
	}
	dependency_result_release(&dr);
}

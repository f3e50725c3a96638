/* client.c - per-thread libcurl easy handles with keep-alive reuse. */
#include "hearty.h"
#include "client.h"
#include "log.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static pthread_key_t easy_key;
static pthread_once_t easy_once = PTHREAD_ONCE_INIT;

static void easy_free(void *easy)
{
	curl_easy_cleanup(easy);
}

static void easy_key_make(void)
{
	pthread_key_create(&easy_key, easy_free);
}

int client_global_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

/* The calling thread's handle, reset for a new call; its connection cache survives the reset. */
static CURL *easy_get(void)
{
	CURL *easy;

	pthread_once(&easy_once, easy_key_make);
	easy = pthread_getspecific(easy_key);
	if(easy) {
		curl_easy_reset(easy);
		return easy;
	}
	easy = curl_easy_init();
	if(easy)
		pthread_setspecific(easy_key, easy);
	return easy;
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
	struct buf *b = arg;
	return buf_append(b, data, size * n) ? 0 : size * n;
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
	struct buf *b = arg;
	/* A new status line (after 100 Continue) starts the headers over. */
	if(n * size > 5 && memcmp(data, "HTTP/", 5) == 0)
		buf_reset(b);
	return buf_append(b, data, size * n) ? 0 : size * n;
}

/* Progress callback: a non-zero return aborts the transfer. */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	const atomic_bool *cancel = arg;
	return atomic_load(cancel) ? 1 : 0;
}

static struct curl_slist *build_headers(const struct client_call *call)
{
	struct curl_slist *list = NULL, *tmp;
	char rid[96];

	/* curl would otherwise wait for 100-continue on larger bodies. */
	list = curl_slist_append(list, "Expect:");
	if(list && log_request_id()[0]) {
		snprintf(rid, sizeof(rid), "X-Request-Id: %s", log_request_id());
		tmp = curl_slist_append(list, rid);
		list = tmp ? tmp : list;
	}
	for(size_t i = 0; list && call->headers && call->headers[i]; i++) {
		tmp = curl_slist_append(list, call->headers[i]);
		if(!tmp) {
			curl_slist_free_all(list);
			return NULL;
		}
		list = tmp;
	}
	return list;
}

/* Sorts a failed transfer by what the callee may have seen. The final error
 * code is no guide to that: when a reused keep-alive connection answers
 * nothing, libcurl sends the request again on a new connection, so a request
 * that was delivered (and perhaps processed) can end in "couldn't connect".
 * What counts is whether any request bytes went out during the transfer. */
static int classify(CURLcode cc, CURL *easy, struct client_result *res)
{
	long sent = 0;

	snprintf(res->error, sizeof(res->error), "%s", curl_easy_strerror(cc));
	curl_easy_getinfo(easy, CURLINFO_REQUEST_SIZE, &sent);
	if(cc == CURLE_ABORTED_BY_CALLBACK)
		return HR_ERR_STOPPED;
	if(cc == CURLE_WRITE_ERROR) {
		snprintf(res->error, sizeof(res->error), "response larger than allowed");
		return HR_ERR_UPSTREAM;
	}
	if(sent == 0)
		return HR_ERR_CONNECT;
	return cc == CURLE_OPERATION_TIMEDOUT ? HR_ERR_TIMEOUT : HR_ERR_UPSTREAM;
}

int client_call(const struct client_call *call, struct client_result *res)
{
	struct curl_slist *headers;
	CURL *easy;
	CURLcode cc;
	long status = 0;
	int rc;

	memset(res, 0, sizeof(*res));
	buf_init(&res->body, call->max_response ? call->max_response : 4 * 1024 * 1024);
	buf_init(&res->headers, 64 * 1024);
	easy = easy_get();
	headers = easy ? build_headers(call) : NULL;
	if(!easy || !headers) {
		snprintf(res->error, sizeof(res->error), "out of memory");
		curl_slist_free_all(headers);
		return HR_ERR_CONNECT;
	}
	curl_easy_setopt(easy, CURLOPT_URL, call->url);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, call->connect_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, call->timeout_ms);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, &res->body);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http");
	if(call->cancel) {
		curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, on_progress);
		curl_easy_setopt(easy, CURLOPT_XFERINFODATA, (void *)call->cancel);
	}
	if(call->want_headers) {
		curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
		curl_easy_setopt(easy, CURLOPT_HEADERDATA, &res->headers);
	}
	if(strcmp(call->method, "GET") == 0) {
		curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
	} else if(strcmp(call->method, "HEAD") == 0) {
		curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
	} else {
		curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, call->method);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDS, call->body ? call->body : "");
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)call->body_len);
	}
	cc = curl_easy_perform(easy);
	if(cc == CURLE_OK) {
		curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
		res->status = (int)status;
		rc = HR_OK;
	} else {
		rc = classify(cc, easy, res);
	}
	/* The handle keeps a pointer to the list: clear it before freeing. */
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(headers);
	return rc;
}

void client_result_release(struct client_result *res)
{
	buf_release(&res->body);
	buf_release(&res->headers);
}

int client_post_json(const char *url, json_t *body, long connect_ms, long timeout_ms,
		     int *status, json_t **out, char *err, size_t errlen)
{
	static const char *const json_headers[] = { "Content-Type: application/json", NULL };
	struct client_call call = { 0 };
	struct client_result res;
	char *text = json_dumps(body, JSON_COMPACT);
	int rc;

	*out = NULL;
	*status = 0;
	if(!text) {
		snprintf(err, errlen, "out of memory");
		return HR_ERR_CONNECT;
	}
	call.method = "POST";
	call.url = url;
	call.body = text;
	call.body_len = strlen(text);
	call.headers = json_headers;
	call.connect_timeout_ms = connect_ms;
	call.timeout_ms = timeout_ms;
	rc = client_call(&call, &res);
	free(text);
	if(rc == HR_OK) {
		*status = res.status;
		*out = json_loadb(res.body.data ? res.body.data : "", res.body.len, 0, NULL);
	} else {
		snprintf(err, errlen, "%s", res.error);
	}
	client_result_release(&res);
	return rc;
}

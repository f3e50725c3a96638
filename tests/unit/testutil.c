/* testutil.c - shared helpers of the unit suites (see testutil.h). */
#include "hearty.h"
#include "testutil.h"
#include "config.h"
#include "metrics.h"
#include "store.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <dirent.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

char *tu_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char tmpl[512];

	snprintf(tmpl, sizeof(tmpl), "%s/hearty-unit-XXXXXX", base && *base ? base : "/tmp");
	if(!mkdtemp(tmpl))
		return NULL;
	return strdup(tmpl);
}

void tu_rmdir(char *dir)
{
	DIR *d;
	struct dirent *e;
	char path[1024];

	if(!dir)
		return;
	if(getenv("HEARTY_UNIT_KEEP_TMP")) {
		printf("   kept %s\n", dir);
		free(dir);
		return;
	}
	d = opendir(dir);
	if(d) {
		while((e = readdir(d)) != NULL) {
			if(strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
				continue;
			tu_path(path, sizeof(path), dir, e->d_name);
			unlink(path);
		}
		closedir(d);
	}
	rmdir(dir);
	free(dir);
}

void tu_path(char *out, size_t outlen, const char *dir, const char *name)
{
	snprintf(out, outlen, "%s/%s", dir, name);
}

int tu_free_port(void)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int port = -1;

	if(fd < 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = 0;
	if(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	   getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

void tu_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

bool tu_wait_until(bool (*pred)(void *arg), void *arg, int timeout_ms)
{
	int64_t deadline = hr_mono_us() + (int64_t)timeout_ms * 1000;

	for(;;) {
		if(pred(arg))
			return true;
		if(hr_mono_us() >= deadline)
			return pred(arg);
		tu_sleep_ms(10);
	}
}

/* ---- HTTP ------------------------------------------------------------------ */

static size_t on_data(char *data, size_t size, size_t n, void *arg)
{
	return buf_append(arg, data, size * n) ? 0 : size * n;
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
	struct buf *b = arg;
	/* A new status line (after a 100 Continue) starts the headers over. */
	if(size * n >= 5 && memcmp(data, "HTTP/", 5) == 0)
		buf_reset(b);
	return buf_append(b, data, size * n) ? 0 : size * n;
}

struct upload {
	const char *data;
	size_t left;
};

/* Hands the body out in small pieces, so a chunked upload has several chunks. */
static size_t on_read(char *out, size_t size, size_t n, void *arg)
{
	struct upload *up = arg;
	size_t room = size * n, take = up->left < 300 ? up->left : 300;

	if(take > room)
		take = room;
	memcpy(out, up->data, take);
	up->data += take;
	up->left -= take;
	return take;
}

int tu_http(const struct tu_request *rq, struct tu_response *out)
{
	struct curl_slist *list = NULL;
	struct upload up = { rq->body ? rq->body : "", rq->body_len };
	int64_t start = hr_mono_us();
	struct buf body, headers;
	CURL *easy;
	CURLcode cc = CURLE_OUT_OF_MEMORY;

	memset(out, 0, sizeof(*out));
	buf_init(&body, 16 * 1024 * 1024);
	buf_init(&headers, 64 * 1024);
	easy = curl_easy_init();
	if(!easy)
		goto out;
	list = curl_slist_append(list, "Expect:");
	for(size_t i = 0; rq->headers && rq->headers[i]; i++)
		list = curl_slist_append(list, rq->headers[i]);
	if(rq->chunked)
		list = curl_slist_append(list, "Transfer-Encoding: chunked");
	curl_easy_setopt(easy, CURLOPT_URL, rq->url);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, rq->timeout_ms ? rq->timeout_ms : 5000L);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, list);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, &body);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, &headers);
	if(strcmp(rq->method, "GET") == 0) {
		curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
	} else if(rq->chunked) {
		curl_easy_setopt(easy, CURLOPT_POST, 1L);
		curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, rq->method);
		curl_easy_setopt(easy, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(easy, CURLOPT_READDATA, &up);
	} else {
		curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, rq->method);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDS, up.data);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)up.left);
	}
	cc = curl_easy_perform(easy);
	if(cc == CURLE_OK)
		curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &out->status);
	else
		printf("   (http %s %s: %s)\n", rq->method, rq->url, curl_easy_strerror(cc));
	curl_easy_cleanup(easy);
	curl_slist_free_all(list);
out:
	out->secs = (double)(hr_mono_us() - start) / 1e6;
	out->body = buf_detach(&body, &out->body_len);
	out->headers = buf_detach(&headers, NULL);
	buf_release(&body);
	buf_release(&headers);
	if(out->body_len)
		out->json = json_loadb(out->body, out->body_len, 0, NULL);
	return cc == CURLE_OK ? 0 : -1;
}

int tu_get(const char *url, struct tu_response *out)
{
	struct tu_request rq = { .method = "GET", .url = url };
	return tu_http(&rq, out);
}

void tu_response_release(struct tu_response *r)
{
	free(r->body);
	free(r->headers);
	json_decref(r->json);
	memset(r, 0, sizeof(*r));
}

bool tu_header(const struct tu_response *r, const char *name, char *out, size_t outlen)
{
	size_t nlen = strlen(name);
	const char *p = r->headers;

	while(p && *p) {
		const char *eol = strchr(p, '\n');
		size_t linelen = eol ? (size_t)(eol - p) : strlen(p);
		if(linelen > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
			const char *v = p + nlen + 1;
			const char *end = p + linelen;
			while(v < end && *v == ' ')
				v++;
			while(end > v && (end[-1] == '\r' || end[-1] == ' '))
				end--;
			snprintf(out, outlen, "%.*s", (int)(end - v), v);
			return true;
		}
		p = eol ? eol + 1 : p + linelen;
	}
	return false;
}

/* ---- store reads ------------------------------------------------------------ */

struct store_query {
	const char *sql;
	int64_t num;
	char *text;
	size_t textlen;
};

static int store_query_fn(struct db *db, void *arg)
{
	struct store_query *q = arg;
	struct db_stmt *s = db_prepare(db, q->sql);
	int rc;

	if(!s)
		return HR_ERR_STORE;
	rc = db_step(s);
	if(rc == DB_DONE)
		return HR_ERR_NOT_FOUND;
	if(rc != DB_ROW)
		return rc;
	q->num = db_col_int(s, 0);
	if(q->text)
		snprintf(q->text, q->textlen, "%s", db_col_text(s, 0));
	return HR_OK;
}

int tu_store_int(struct store *st, const char *sql, int64_t *out)
{
	struct store_query q = { .sql = sql };
	int rc = store_read(st, store_query_fn, &q);

	*out = rc == HR_OK ? q.num : -1;
	return rc;
}

int tu_store_text(struct store *st, const char *sql, char *out, size_t outlen)
{
	struct store_query q = { .sql = sql, .text = out, .textlen = outlen };
	int rc;

	out[0] = '\0';
	rc = store_read(st, store_query_fn, &q);
	return rc;
}

/* ---- metrics --------------------------------------------------------------- */

/* Calls fn for each sample line "series value" of the current metrics text. */
static void metric_lines(void (*fn)(const char *series, size_t slen, int64_t value, void *arg), void *arg)
{
	struct buf out;
	char *text, *line, *save = NULL;

	buf_init(&out, 4 * 1024 * 1024);
	metrics_render(&out);
	text = buf_detach(&out, NULL);
	if(!text)
		return;
	for(line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *space = strrchr(line, ' ');
		int64_t v;
		if(line[0] == '#' || !space)
			continue;
		if(parse_int64(space + 1, INT64_MIN, INT64_MAX, &v) == 0)
			fn(line, (size_t)(space - line), v, arg);
	}
	free(text);
}

struct metric_query {
	const char *name;
	bool exact;        /* match the whole series text, not the family name */
	int64_t sum;
	bool found;
};

static void metric_match(const char *series, size_t slen, int64_t value, void *arg)
{
	struct metric_query *q = arg;
	size_t nlen = strlen(q->name);

	if(slen < nlen || memcmp(series, q->name, nlen) != 0)
		return;
	if(slen == nlen || (!q->exact && series[nlen] == '{')) {
		q->sum += value;
		q->found = true;
	}
}

int64_t tu_metric_sum(const char *name)
{
	struct metric_query q = { .name = name };
	metric_lines(metric_match, &q);
	return q.sum;
}

int64_t tu_metric_series(const char *series)
{
	struct metric_query q = { .name = series, .exact = true };
	metric_lines(metric_match, &q);
	return q.found ? q.sum : -1;
}

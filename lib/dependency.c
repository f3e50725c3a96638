/* dependency.c - budgets, retries and the breaker around outbound calls. */
#include "hearty.h"
#include "dependency.h"
#include "config.h"
#include "log.h"
#include "server.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#define BUDGET_CAP 10.0   /* retry tokens at most; also the start, so a quiet service may retry */

struct dependency {
	char *name;
	char *base_url;
	struct dependency_config cfg;
	struct breaker *breaker;
	pthread_mutex_t lock;
	double tokens;        /* the retry budget */
};

int dependency_config_from_env(const char *prefix, long default_timeout_ms,
			       struct dependency_config *cfg, char *err, size_t errlen)
{
	char name[96];
	int64_t v, connect;

	memset(cfg, 0, sizeof(*cfg));
	if(config_int("CONNECT_TIMEOUT_MS", 500, 1, 60000, &connect, err, errlen))
		return -1;
#define DEP_INT(suffix, def, min, max, field) do { \
		snprintf(name, sizeof(name), "%s%s", prefix, suffix); \
		if(config_int(name, def, min, max, &v, err, errlen)) \
			return -1; \
		cfg->field = v; \
	} while(0)
	DEP_INT("_CONNECT_TIMEOUT_MS", connect, 1, 60000, connect_timeout_ms);
	DEP_INT("_TIMEOUT_MS", default_timeout_ms, 1, 600000, timeout_ms);
	DEP_INT("_ATTEMPT_TIMEOUT_MS", cfg->timeout_ms, 1, 600000, attempt_timeout_ms);
	DEP_INT("_RETRIES", 2, 0, 10, retries);
	DEP_INT("_BACKOFF_MS", 25, 1, 60000, backoff_ms);
	DEP_INT("_BACKOFF_MAX_MS", 1000, 1, 600000, backoff_max_ms);
	DEP_INT("_RETRY_BUDGET_PERCENT", 20, 0, 100, retry_budget_percent);
#undef DEP_INT
	return breaker_config_from_env(prefix, &cfg->breaker, err, errlen);
}

struct dependency *dependency_new(const char *name, const char *base_url, const struct dependency_config *cfg)
{
	struct dependency *d = calloc(1, sizeof(*d));

	if(!d)
		return NULL;
	d->name = strdup(name);
	d->base_url = strdup(base_url);
	d->cfg = *cfg;
	d->tokens = BUDGET_CAP;
	pthread_mutex_init(&d->lock, NULL);
	d->breaker = d->name && d->base_url ? breaker_new(name, &cfg->breaker, NULL) : NULL;
	if(!d->breaker) {
		dependency_free(d);
		return NULL;
	}
	return d;
}

void dependency_free(struct dependency *d)
{
	if(!d)
		return;
	breaker_free(d->breaker);
	pthread_mutex_destroy(&d->lock);
	free(d->name);
	free(d->base_url);
	free(d);
}

const char *dependency_url(const struct dependency *d) { return d->base_url; }
struct breaker *dependency_breaker(struct dependency *d) { return d->breaker; }

/* ---- the retry budget --------------------------------------------------- */

static void budget_deposit(struct dependency *d)
{
	pthread_mutex_lock(&d->lock);
	d->tokens += d->cfg.retry_budget_percent / 100.0;
	if(d->tokens > BUDGET_CAP)
		d->tokens = BUDGET_CAP;
	pthread_mutex_unlock(&d->lock);
}

static bool budget_withdraw(struct dependency *d)
{
	bool ok;

	pthread_mutex_lock(&d->lock);
	ok = d->tokens >= 1.0;
	if(ok)
		d->tokens -= 1.0;
	pthread_mutex_unlock(&d->lock);
	return ok;
}

/* ---- one attempt -------------------------------------------------------- */

/* The callee's Retry-After in seconds (delta form), 0 when absent. */
static int retry_after_of(const struct client_result *res)
{
	const char *p = res->headers.data ? strcasestr(res->headers.data, "\nretry-after:") : NULL;
	long v;

	if(!p)
		return 0;
	v = strtol(p + strlen("\nretry-after:"), NULL, 10);
	return v > 0 && v < 3600 ? (int)v : 0;
}

/* What an answer or failure means to the breaker. */
static enum breaker_outcome outcome_of(const struct dependency *d, int rc, int status)
{
	if(rc == HR_ERR_TIMEOUT)
		return BREAKER_TIMEOUT;
	if(rc != HR_OK)
		return BREAKER_FAILURE;
	if(status >= 500 && !(status == 503 && d->cfg.ignore_503))
		return BREAKER_FAILURE;
	return BREAKER_SUCCESS;   /* 4xx: the callee works; the request was wrong */
}

/* Sends one attempt with attempt_ms to answer. */
static int attempt(struct dependency *d, struct client_call *call, long attempt_ms,
		   struct dependency_result *out)
{
	const char *const *given = call->headers;
	const char *headers[66];
	char deadline[48];
	size_t n = 0;
	int rc;

	/* The callee gets the time this attempt allows: it stops working after that. */
	snprintf(deadline, sizeof(deadline), "Request-Deadline-Ms: %ld", attempt_ms);
	for(; given && given[n] && n < HR_ARRAY_LEN(headers) - 2; n++)
		headers[n] = given[n];
	headers[n++] = deadline;
	headers[n] = NULL;
	call->headers = headers;
	call->connect_timeout_ms = d->cfg.connect_timeout_ms < attempt_ms ? d->cfg.connect_timeout_ms : attempt_ms;
	call->timeout_ms = attempt_ms;
	call->want_headers = true;
	client_result_release(&out->res);
	rc = client_call(call, &out->res);
	call->headers = given;
	out->status = rc == HR_OK ? out->res.status : 0;
	out->attempts++;
	return rc;
}

/* Should a failed attempt be tried again, and after how long (ms)? -1: no. */
static int64_t retry_delay(struct dependency *d, int rc, const struct dependency_result *out,
			   bool safe, int tried, int64_t left_ms)
{
	int64_t ceiling, delay;
	uint32_t rnd = 0;

	/* A refused connection delivered nothing: repeating it is always safe. */
	if(tried > d->cfg.retries || (!safe && rc != HR_ERR_CONNECT))
		return -1;
	if(rc == HR_OK && (out->status < 500 || (out->status == 503 && d->cfg.ignore_503)))
		return -1;
	ceiling = (int64_t)d->cfg.backoff_ms << (tried - 1 < 16 ? tried - 1 : 16);
	if(ceiling > d->cfg.backoff_max_ms)
		ceiling = d->cfg.backoff_max_ms;
	if(getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		rnd = (uint32_t)hr_mono_us();
	delay = (int64_t)(rnd % (uint32_t)(ceiling + 1));   /* full jitter */
	if(rc == HR_OK && out->status == 503 && retry_after_of(&out->res) > 0)
		delay = retry_after_of(&out->res) * 1000LL;
	if(delay >= left_ms || !budget_withdraw(d))
		return -1;
	return delay;
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* The end of this call's budget: its total counted from when the incoming
 * request arrived (time queued for a worker included), or that request's
 * own deadline if sooner. */
static int64_t call_deadline_us(const struct dependency *d)
{
	int64_t started = server_request_started_us();
	int64_t end = (started ? started : hr_mono_us()) + d->cfg.timeout_ms * 1000;
	int64_t incoming = server_request_deadline_us();

	return incoming && incoming < end ? incoming : end;
}

int dependency_call(struct dependency *d, struct client_call *call, bool safe,
		    struct dependency_result *out)
{
	int64_t end = call_deadline_us(d), left_ms, delay;
	struct breaker_ticket ticket;
	int rc = HR_ERR_DEADLINE;

	memset(out, 0, sizeof(*out));
	budget_deposit(d);
	for(int tried = 1;; tried++) {
		left_ms = (end - hr_mono_us()) / 1000;
		if(left_ms <= 0)
			return out->attempts ? rc : HR_ERR_DEADLINE;
		switch(breaker_allow(d->breaker, &ticket)) {
		case BREAKER_SHORT_CIRCUIT:
			out->retry_after_s = (int)((ticket.retry_after_ms + 999) / 1000);
			/* Refused now; but if an attempt went out, its outcome stands. */
			return out->attempts ? rc : HR_ERR_OPEN;
		case BREAKER_REJECTED:
			out->retry_after_s = 1;
			return out->attempts ? rc : HR_ERR_BULKHEAD;
		case BREAKER_ALLOWED:
			break;
		}
		rc = attempt(d, call, left_ms < d->cfg.attempt_timeout_ms ? left_ms : d->cfg.attempt_timeout_ms, out);
		breaker_record(d->breaker, &ticket, outcome_of(d, rc, out->status));
		if(rc == HR_ERR_TIMEOUT || rc == HR_ERR_UPSTREAM ||
		   (rc == HR_OK && out->status >= 500 && out->status != 503))
			out->maybe_delivered = true;
		out->retry_after_s = rc == HR_OK && out->status == 503 ? retry_after_of(&out->res) : 0;
		delay = retry_delay(d, rc, out, safe, tried, (end - hr_mono_us()) / 1000);
		if(delay < 0)
			return rc;
		log_event(LOG_DEBUG, "retrying", json_pack("{s:s,s:i,s:s,s:i,s:I}", "dependency", d->name,
			  "attempt", tried, "error", hr_err_name(rc), "status", out->status, "delayMs", (json_int_t)delay));
		sleep_ms(delay);
	}
}

void dependency_result_release(struct dependency_result *result)
{
	client_result_release(&result->res);
}

int dependency_post_json(struct dependency *d, const char *path, json_t *body, bool safe,
			 struct dependency_result *result, json_t **answer)
{
	static const char *const json_headers[] = { "Content-Type: application/json", NULL };
	struct client_call call = { 0 };
	char url[1024];
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	int rc;

	*answer = NULL;
	snprintf(url, sizeof(url), "%s%s", d->base_url, path);
	call.method = "POST";
	call.url = url;
	call.body = text;
	call.body_len = text ? strlen(text) : 0;
	call.headers = text ? json_headers : NULL;
	rc = dependency_call(d, &call, safe, result);
	free(text);
	if(rc == HR_OK)
		*answer = json_loadb(result->res.body.data ? result->res.body.data : "", result->res.body.len, 0, NULL);
	return rc;
}

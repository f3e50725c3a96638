/* breaker.c - rolling-window circuit breaker with a bulkhead. */
#include "hearty.h"
#include "breaker.h"
#include "config.h"
#include "log.h"
#include "metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS_MAX 100

struct bucket {
	int64_t start;           /* bucket start time; a stale bucket is reset on use */
	uint32_t calls, errors;
};

struct breaker {
	char *name;
	struct breaker_config cfg;
	int64_t (*clock)(void);
	int64_t bucket_ms;

	pthread_mutex_t lock;
	struct bucket buckets[BUCKETS_MAX];
	enum breaker_state state;
	uint64_t generation;     /* bumped at every transition */
	int64_t opened_at;
	int probes_out;          /* half-open: probes allowed and not yet recorded */
	int probes_ok;           /* half-open: probes that succeeded */
	int inflight;            /* bulkhead */
	struct breaker_counts counts;
};

static const char *const state_names[] = { "closed", "open", "half_open" };

static int64_t mono_ms(void)
{
	return hr_mono_us() / 1000;
}

int breaker_config_from_env(const char *prefix, struct breaker_config *cfg, char *err, size_t errlen)
{
	static const struct {
		const char *suffix;
		int64_t def, min, max;
		size_t offset;
	} vars[] = {
		{ "_BREAKER_WINDOW_MS", 10000, 100, 3600000, offsetof(struct breaker_config, window_ms) },
		{ "_BREAKER_BUCKETS", 10, 1, BUCKETS_MAX, offsetof(struct breaker_config, buckets) },
		{ "_BREAKER_MIN_REQUESTS", 20, 1, 1000000, offsetof(struct breaker_config, min_requests) },
		{ "_BREAKER_ERROR_PERCENT", 50, 1, 100, offsetof(struct breaker_config, error_percent) },
		{ "_BREAKER_OPEN_MS", 5000, 1, 3600000, offsetof(struct breaker_config, open_ms) },
		{ "_BREAKER_PROBES", 3, 1, 1000, offsetof(struct breaker_config, probes) },
		{ "_MAX_CONCURRENT", 128, 1, 100000, offsetof(struct breaker_config, max_concurrent) },
	};
	char name[96];
	int64_t v;

	for(size_t i = 0; i < HR_ARRAY_LEN(vars); i++) {
		snprintf(name, sizeof(name), "%s%s", prefix, vars[i].suffix);
		if(config_int(name, vars[i].def, vars[i].min, vars[i].max, &v, err, errlen))
			return -1;
		*(int *)((char *)cfg + vars[i].offset) = (int)v;
	}
	if(cfg->window_ms / cfg->buckets < 1) {
		snprintf(err, errlen, "%s_BREAKER_WINDOW_MS must be at least %s_BREAKER_BUCKETS ms", prefix, prefix);
		return -1;
	}
	return 0;
}

/* ---- the rolling window (lock held) ------------------------------------- */

static struct bucket *bucket_now(struct breaker *b, int64_t now)
{
	int64_t start = now - now % b->bucket_ms;
	struct bucket *bk = &b->buckets[(start / b->bucket_ms) % b->cfg.buckets];

	if(bk->start != start) {
		bk->start = start;
		bk->calls = 0;
		bk->errors = 0;
	}
	return bk;
}

static void window_sum(struct breaker *b, int64_t now, uint64_t *calls, uint64_t *errors)
{
	*calls = 0;
	*errors = 0;
	for(int i = 0; i < b->cfg.buckets; i++) {
		const struct bucket *bk = &b->buckets[i];
		if(bk->start > now - b->cfg.window_ms) {
			*calls += bk->calls;
			*errors += bk->errors;
		}
	}
}

static void window_reset(struct breaker *b)
{
	memset(b->buckets, 0, sizeof(b->buckets));
	for(int i = 0; i < BUCKETS_MAX; i++)
		b->buckets[i].start = INT64_MIN;
}

/* ---- transitions (lock held) -------------------------------------------- */

static void transition(struct breaker *b, enum breaker_state to, int64_t now, uint64_t calls, uint64_t errors)
{
	enum breaker_state from = b->state;

	b->state = to;
	b->generation++;
	if(to == BREAKER_OPEN)
		b->opened_at = now;
	if(to == BREAKER_HALF_OPEN) {
		b->probes_out = 0;
		b->probes_ok = 0;
	}
	if(to == BREAKER_CLOSED)
		window_reset(b);
	log_event(to == BREAKER_OPEN ? LOG_WARN : LOG_INFO, "circuit breaker changed state",
		  json_pack("{s:s,s:s,s:s,s:I,s:I}", "dependency", b->name, "from", state_names[from],
			    "to", state_names[to], "windowCalls", (json_int_t)calls,
			    "windowErrors", (json_int_t)errors));
}

enum breaker_permit breaker_allow(struct breaker *b, struct breaker_ticket *ticket)
{
	enum breaker_permit p = BREAKER_ALLOWED;
	int64_t now = b->clock();

	pthread_mutex_lock(&b->lock);
	if(b->state == BREAKER_OPEN && now - b->opened_at >= b->cfg.open_ms)
		transition(b, BREAKER_HALF_OPEN, now, 0, 0);
	if(b->state == BREAKER_OPEN ||
	   (b->state == BREAKER_HALF_OPEN && b->probes_out + b->probes_ok >= b->cfg.probes)) {
		p = BREAKER_SHORT_CIRCUIT;
		ticket->retry_after_ms = b->state == BREAKER_OPEN ? b->cfg.open_ms - (now - b->opened_at) : 1;
		if(ticket->retry_after_ms < 1)
			ticket->retry_after_ms = 1;
		b->counts.short_circuits++;
	} else if(b->inflight >= b->cfg.max_concurrent) {
		p = BREAKER_REJECTED;
		b->counts.rejections++;
	} else {
		b->inflight++;
		if(b->state == BREAKER_HALF_OPEN)
			b->probes_out++;
	}
	ticket->generation = b->generation;
	pthread_mutex_unlock(&b->lock);
	return p;
}

void breaker_record(struct breaker *b, const struct breaker_ticket *ticket, enum breaker_outcome outcome)
{
	int64_t now = b->clock();
	bool error = outcome != BREAKER_SUCCESS;
	uint64_t calls, errors;
	struct bucket *bk;

	pthread_mutex_lock(&b->lock);
	b->inflight--;
	if(outcome == BREAKER_SUCCESS)
		b->counts.successes++;
	else if(outcome == BREAKER_FAILURE)
		b->counts.failures++;
	else
		b->counts.timeouts++;
	if(ticket->generation != b->generation) {
		/* Allowed under an earlier state: counted above, moves nothing. */
	} else if(b->state == BREAKER_HALF_OPEN) {
		if(b->probes_out > 0)
			b->probes_out--;
		if(error)
			transition(b, BREAKER_OPEN, now, 0, 1);
		else if(++b->probes_ok >= b->cfg.probes)
			transition(b, BREAKER_CLOSED, now, (uint64_t)b->probes_ok, 0);
	} else if(b->state == BREAKER_CLOSED) {
		bk = bucket_now(b, now);
		bk->calls++;
		bk->errors += error;
		window_sum(b, now, &calls, &errors);
		if(calls >= (uint64_t)b->cfg.min_requests && errors * 100 >= calls * (uint64_t)b->cfg.error_percent)
			transition(b, BREAKER_OPEN, now, calls, errors);
	}
	pthread_mutex_unlock(&b->lock);
}

enum breaker_state breaker_state(struct breaker *b)
{
	enum breaker_state s;
	int64_t now = b->clock();

	pthread_mutex_lock(&b->lock);
	/* Report half-open once the open interval is over, as the next call would see it. */
	s = b->state == BREAKER_OPEN && now - b->opened_at >= b->cfg.open_ms ? BREAKER_HALF_OPEN : b->state;
	pthread_mutex_unlock(&b->lock);
	return s;
}

int64_t breaker_short_circuit_ms(struct breaker *b)
{
	int64_t left = 0, now = b->clock();

	pthread_mutex_lock(&b->lock);
	if(b->state == BREAKER_OPEN)
		left = b->cfg.open_ms - (now - b->opened_at);
	if(left > 0)
		b->counts.short_circuits++;
	pthread_mutex_unlock(&b->lock);
	return left > 0 ? left : 0;
}

void breaker_counts(struct breaker *b, struct breaker_counts *out)
{
	pthread_mutex_lock(&b->lock);
	*out = b->counts;
	pthread_mutex_unlock(&b->lock);
}

/* Every live breaker, so /metrics prints each family once with all its series. */
static struct breaker *live[64];
static size_t nlive;
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t collector_once = PTHREAD_ONCE_INIT;

static void breakers_collect(struct buf *out, void *ctx)
{
	static const char *const outcome[] = { "success", "failure", "timeout", "rejected", "short_circuited" };
	struct breaker_counts c;

	pthread_mutex_lock(&live_lock);
	if(nlive) {
		buf_puts(out, "# HELP breaker_state Circuit state by dependency: 0 closed, 1 open, 2 half-open.\n"
			 "# TYPE breaker_state gauge\n");
		for(size_t i = 0; i < nlive; i++)
			buf_printf(out, "breaker_state{dependency=\"%s\"} %d\n", live[i]->name,
				   (int)breaker_state(live[i]));
		buf_puts(out, "# HELP breaker_calls_total Calls to a dependency by outcome.\n"
			 "# TYPE breaker_calls_total counter\n");
	}
	for(size_t i = 0; i < nlive; i++) {
		uint64_t v[5];
		breaker_counts(live[i], &c);
		v[0] = c.successes;
		v[1] = c.failures;
		v[2] = c.timeouts;
		v[3] = c.rejections;
		v[4] = c.short_circuits;
		for(size_t k = 0; k < HR_ARRAY_LEN(outcome); k++)
			buf_printf(out, "breaker_calls_total{dependency=\"%s\",outcome=\"%s\"} %llu\n",
				   live[i]->name, outcome[k], (unsigned long long)v[k]);
	}
	pthread_mutex_unlock(&live_lock);
}

static void collector_register(void)
{
	metrics_add_collector(breakers_collect, NULL);
}

struct breaker *breaker_new(const char *name, const struct breaker_config *cfg, int64_t (*clock)(void))
{
	struct breaker *b = calloc(1, sizeof(*b));

	if(!b || !(b->name = strdup(name))) {
		free(b);
		return NULL;
	}
	b->cfg = *cfg;
	if(b->cfg.buckets < 1 || b->cfg.buckets > BUCKETS_MAX)
		b->cfg.buckets = 10;
	b->bucket_ms = b->cfg.window_ms / b->cfg.buckets;
	if(b->bucket_ms < 1)
		b->bucket_ms = 1;
	b->clock = clock ? clock : mono_ms;
	pthread_mutex_init(&b->lock, NULL);
	window_reset(b);
	pthread_once(&collector_once, collector_register);
	pthread_mutex_lock(&live_lock);
	if(nlive < HR_ARRAY_LEN(live))
		live[nlive++] = b;
	pthread_mutex_unlock(&live_lock);
	return b;
}

void breaker_free(struct breaker *b)
{
	if(!b)
		return;
	pthread_mutex_lock(&live_lock);
	for(size_t i = 0; i < nlive; i++) {
		if(live[i] == b) {
			live[i] = live[--nlive];
			break;
		}
	}
	pthread_mutex_unlock(&live_lock);
	pthread_mutex_destroy(&b->lock);
	free(b->name);
	free(b);
}

/* test_breaker.c - the circuit breaker and bulkhead, every transition driven
 * by an injected clock (no sleeps), its configuration and its /metrics series. */
#include "hearty.h"
#include "breaker.h"
#include "log.h"
#include "metrics.h"
#include "check.h"
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>

#define T0 1000000   /* a bucket-aligned start, far from 0 */

/* The injected clock: tests move it by hand. Atomic because the thread test
 * reads it from several threads. */
static _Atomic int64_t now_ms = T0;

static int64_t test_clock(void)
{
	return now_ms;
}

/* The documented defaults, with a window of 10 buckets of 1 s. */
static struct breaker_config defaults(void)
{
	return (struct breaker_config){
		.window_ms = 10000, .buckets = 10, .min_requests = 20, .error_percent = 50,
		.open_ms = 5000, .probes = 3, .max_concurrent = 64,
	};
}

static struct breaker *make(const char *name, const struct breaker_config *cfg)
{
	now_ms = T0;
	return breaker_new(name, cfg, test_clock);
}

/* One allowed call with an outcome; false (and a failed check) if it was not allowed. */
static bool call(struct breaker *b, enum breaker_outcome outcome)
{
	struct breaker_ticket ra = { .retry_after_ms = -1 };
	enum breaker_permit p = breaker_allow(b, &ra);

	if(!CHECK_INT(p, BREAKER_ALLOWED))
		return false;
	breaker_record(b, &ra, outcome);
	return true;
}

static void calls(struct breaker *b, int n, enum breaker_outcome outcome)
{
	for(int i = 0; i < n; i++)
		call(b, outcome);
}

/* Opens b with min_requests failures (b must be closed with an empty window). */
static void trip(struct breaker *b, int min_requests)
{
	calls(b, min_requests, BREAKER_FAILURE);
	CHECK_INT(breaker_state(b), BREAKER_OPEN);
}

/* ---- closed -> open --------------------------------------------------------- */

static void test_min_requests(void)
{
	struct breaker_config cfg = defaults();
	struct breaker *b = make("unit-min", &cfg);
	struct breaker_counts c;

	/* 100% errors, but fewer calls than min_requests: stays closed. */
	calls(b, 19, BREAKER_FAILURE);
	CHECK_INT(breaker_state(b), BREAKER_CLOSED);
	breaker_counts(b, &c);
	CHECK_INT(c.failures, 19);
	CHECK_INT(c.short_circuits, 0);
	/* The 20th error reaches the volume: open. */
	calls(b, 1, BREAKER_FAILURE);
	CHECK_INT(breaker_state(b), BREAKER_OPEN);
	breaker_free(b);

	/* min_requests 1: a single error is enough at 100%. */
	cfg.min_requests = 1;
	b = make("unit-min1", &cfg);
	calls(b, 1, BREAKER_FAILURE);
	CHECK_INT(breaker_state(b), BREAKER_OPEN);
	breaker_free(b);
}

static void test_threshold_boundary(void)
{
	struct breaker_config cfg = defaults();
	struct breaker *b;

	/* Exactly 50% of 20 opens, on the 20th call. */
	b = make("unit-thr", &cfg);
	calls(b, 10, BREAKER_SUCCESS);
	calls(b, 9, BREAKER_FAILURE);
	CHECK_INT(breaker_state(b), BREAKER_CLOSED);
	calls(b, 1, BREAKER_FAILURE);
	CHECK_INT(breaker_state(b), BREAKER_OPEN);
	breaker_free(b);

	/* Errors first: still judged only once the volume is there. */
	b = make("unit-thr", &cfg);
	calls(b, 10, BREAKER_FAILURE);
	calls(b, 9, BREAKER_SUCCESS);
	CHECK_INT(breaker_state(b), BREAKER_CLOSED);
	calls(b, 1, BREAKER_SUCCESS);
	CHECK_INT(breaker_state(b), BREAKER_OPEN);
	breaker_free(b);

	/* 9 of 20 (45%) with threshold 50 does not, in either order, nor does more success. */
	b = make("unit-thr", &cfg);
	calls(b, 9, BREAKER_FAILURE);
	calls(b, 11, BREAKER_SUCCESS);
	CHECK_INT(breaker_state(b), BREAKER_CLOSED);
	calls(b, 5, BREAKER_SUCCESS);
	CHECK_INT(breaker_state(b), BREAKER_CLOSED);
	breaker_free(b);
	b = make("unit-thr", &cfg);
	calls(b, 11, BREAKER_SUCCESS);
	calls(b, 9, BREAKER_FAILURE);
	CHECK_INT(breaker_state(b), BREAKER_CLOSED);
	breaker_free(b);

	/* Above the volume the rate is judged on every call: 20 successes then
	 * errors open exactly when errors reach half (20 of 40). */
	b = make("unit-thr", &cfg);
	calls(b, 20, BREAKER_SUCCESS);
	calls(b, 19, BREAKER_FAILURE);
	CHECK_INT(breaker_state(b), BREAKER_CLOSED);
	calls(b, 1, BREAKER_FAILURE);
	CHECK_INT(breaker_state(b), BREAKER_OPEN);
	breaker_free(b);

	/* Another threshold: 25% of 20 is 5 errors. */
	cfg.error_percent = 25;
	b = make("unit-thr", &cfg);
	calls(b, 15, BREAKER_SUCCESS);
	calls(b, 4, BREAKER_FAILURE);
	CHECK_INT(breaker_state(b), BREAKER_CLOSED);
	calls(b, 1, BREAKER_FAILURE);
	CHECK_INT(breaker_state(b), BREAKER_OPEN);
	breaker_free(b);
}

static void test_outcomes(void)
{
	struct breaker_config cfg = defaults();
	struct breaker *b;
	struct breaker_counts c;

	/* Timeouts are errors. */
	b = make("unit-out", &cfg);
	calls(b, 10, BREAKER_SUCCESS);
	calls(b, 9, BREAKER_TIMEOUT);
	CHECK_INT(breaker_state(b), BREAKER_CLOSED);
	calls(b, 1, BREAKER_TIMEOUT);
	CHECK_INT(breaker_state(b), BREAKER_OPEN);
	breaker_counts(b, &c);
	CHECK_INT(c.timeouts, 10);
	CHECK_INT(c.failures, 0);
	CHECK_INT(c.successes, 10);
	breaker_free(b);

	/* Failures and timeouts add up. */
	b = make("unit-out", &cfg);
	calls(b, 10, BREAKER_SUCCESS);
	calls(b, 5, BREAKER_TIMEOUT);
	calls(b, 4, BREAKER_FAILURE);
	CHECK_INT(breaker_state(b), BREAKER_CLOSED);
	calls(b, 1, BREAKER_FAILURE);
	CHECK_INT(breaker_state(b), BREAKER_OPEN);
	breaker_free(b);

	/* Successes (a 4xx answer is one: the callee works) never open it, with a
	 * threshold that any error would reach. */
	cfg.min_requests = 1;
	cfg.error_percent = 1;
	b = make("unit-out", &cfg);
	calls(b, 500, BREAKER_SUCCESS);
	CHECK_INT(breaker_state(b), BREAKER_CLOSED);
	breaker_counts(b, &c);
	CHECK_INT(c.successes, 500);
	calls(b, 1, BREAKER_TIMEOUT);   /* 1 of 501 is 0.2%: still under 1% */
	CHECK_INT(breaker_state(b), BREAKER_CLOSED);
	calls(b, 4, BREAKER_TIMEOUT);   /* 5 of 505 is just under 1% */
	CHECK_INT(breaker_state(b), BREAKER_CLOSED);
	calls(b, 1, BREAKER_TIMEOUT);   /* 6 of 506 is over */
	CHECK_INT(breaker_state(b), BREAKER_OPEN);
	breaker_free(b);
}

static void test_window_rolls(void)
{
	struct breaker_config cfg = defaults();
	struct breaker *b;

	/* Errors 9.999 s old are still in the 10 s window. */
	b = make("unit-win", &cfg);
	calls(b, 10, BREAKER_FAILURE);
	now_ms = T0 + 9999;
	calls(b, 9, BREAKER_SUCCESS);
	CHECK_INT(breaker_state(b), BREAKER_CLOSED);
	calls(b, 1, BREAKER_SUCCESS);
	CHECK_INT(breaker_state(b), BREAKER_OPEN);   /* 10 of 20 */
	breaker_free(b);

	/* A window later they are gone: the same calls leave it closed. */
	b = make("unit-win", &cfg);
	calls(b, 10, BREAKER_FAILURE);
	now_ms = T0 + 10000;
	calls(b, 10, BREAKER_SUCCESS);
	CHECK_INT(breaker_state(b), BREAKER_CLOSED);
	/* Only the new calls count: 10 errors more make 10 of 20. */
	calls(b, 9, BREAKER_FAILURE);
	CHECK_INT(breaker_state(b), BREAKER_CLOSED);
	calls(b, 1, BREAKER_FAILURE);
	CHECK_INT(breaker_state(b), BREAKER_OPEN);
	breaker_free(b);

	/* Calls spread over time: one error a second for 30 s never has 20 calls
	 * in the window, and the window keeps only the last ~10 s of them. */
	cfg.min_requests = 11;
	b = make("unit-win", &cfg);
	for(int s = 0; s < 30; s++) {
		now_ms = T0 + s * 1000;
		calls(b, 1, BREAKER_FAILURE);
	}
	CHECK_INT(breaker_state(b), BREAKER_CLOSED);
	/* At 30 s the window holds the calls of 21..30 s: the 10th and 11th call. */
	now_ms = T0 + 30000;
	calls(b, 1, BREAKER_FAILURE);
	CHECK_INT(breaker_state(b), BREAKER_CLOSED);
	calls(b, 1, BREAKER_FAILURE);
	CHECK_INT(breaker_state(b), BREAKER_OPEN);
	breaker_free(b);

	/* A bucket left over from long ago (in a slot not reused since) is not
	 * summed: the window is judged by time, not by slot. */
	cfg = defaults();
	b = make("unit-win", &cfg);
	calls(b, 19, BREAKER_FAILURE);
	now_ms = T0 + 3600 * 1000 + 3000;
	calls(b, 19, BREAKER_FAILURE);
	CHECK_INT(breaker_state(b), BREAKER_CLOSED);
	calls(b, 1, BREAKER_FAILURE);
	CHECK_INT(breaker_state(b), BREAKER_OPEN);
	breaker_free(b);
}

/* ---- open, half-open -------------------------------------------------------- */

static void test_open_short_circuits(void)
{
	struct breaker_config cfg = defaults();
	struct breaker *b = make("unit-open", &cfg);
	struct breaker_counts c;
	struct breaker_ticket ra = { .retry_after_ms = -1 };

	trip(b, 20);                                   /* opened at T0 */
	CHECK_INT(breaker_allow(b, &ra), BREAKER_SHORT_CIRCUIT);
	CHECK_INT(ra.retry_after_ms, 5000);
	now_ms = T0 + 1;
	CHECK_INT(breaker_allow(b, &ra), BREAKER_SHORT_CIRCUIT);
	CHECK_INT(ra.retry_after_ms, 4999);
	now_ms = T0 + 2500;
	CHECK_INT(breaker_allow(b, &ra), BREAKER_SHORT_CIRCUIT);
	CHECK_INT(ra.retry_after_ms, 2500);
	now_ms = T0 + 4999;
	CHECK_INT(breaker_allow(b, &ra), BREAKER_SHORT_CIRCUIT);
	CHECK_INT(ra.retry_after_ms, 1);
	CHECK_INT(breaker_state(b), BREAKER_OPEN);
	breaker_counts(b, &c);
	CHECK_INT(c.short_circuits, 4);
	CHECK_INT(c.failures, 20);
	CHECK_INT(c.successes, 0);
	CHECK_INT(c.rejections, 0);

	/* At open_ms it reports half-open (as the next call would see it). */
	now_ms = T0 + 5000;
	CHECK_INT(breaker_state(b), BREAKER_HALF_OPEN);
	breaker_free(b);
}

static void test_half_open_closes(void)
{
	struct breaker_config cfg = defaults();
	struct breaker *b = make("unit-half", &cfg);
	struct breaker_counts c;
	struct breaker_ticket ra = { .retry_after_ms = -1 };

	trip(b, 20);
	now_ms = T0 + 5000;
	/* Exactly `probes` calls go through; more short-circuit while they are out. */
	CHECK_INT(breaker_allow(b, &ra), BREAKER_ALLOWED);
	CHECK_INT(breaker_state(b), BREAKER_HALF_OPEN);
	CHECK_INT(breaker_allow(b, &ra), BREAKER_ALLOWED);
	CHECK_INT(breaker_allow(b, &ra), BREAKER_ALLOWED);
	ra.retry_after_ms = -1;
	CHECK_INT(breaker_allow(b, &ra), BREAKER_SHORT_CIRCUIT);
	CHECK(ra.retry_after_ms >= 1);
	breaker_record(b, &ra, BREAKER_SUCCESS);
	breaker_record(b, &ra, BREAKER_SUCCESS);
	CHECK_INT(breaker_state(b), BREAKER_HALF_OPEN);
	/* Two succeeded, one is still out: no fourth probe. */
	CHECK_INT(breaker_allow(b, &ra), BREAKER_SHORT_CIRCUIT);
	breaker_record(b, &ra, BREAKER_SUCCESS);
	CHECK_INT(breaker_state(b), BREAKER_CLOSED);
	breaker_counts(b, &c);
	CHECK_INT(c.successes, 3);
	CHECK_INT(c.short_circuits, 2);

	/* A fresh window: the 20 errors of 5 s ago (still inside 10 s) are forgotten.
	 * With them, 10 successes + 1 error would be 21 of 31 and reopen. */
	now_ms = T0 + 5001;
	calls(b, 10, BREAKER_SUCCESS);
	calls(b, 1, BREAKER_FAILURE);
	CHECK_INT(breaker_state(b), BREAKER_CLOSED);
	calls(b, 8, BREAKER_FAILURE);
	CHECK_INT(breaker_state(b), BREAKER_CLOSED);   /* 9 of 19 */
	calls(b, 1, BREAKER_FAILURE);
	CHECK_INT(breaker_state(b), BREAKER_OPEN);     /* 10 of 20 */
	breaker_free(b);

	/* probes = 1: one success closes it. */
	cfg.probes = 1;
	b = make("unit-half1", &cfg);
	trip(b, 20);
	now_ms = T0 + 5000;
	CHECK_INT(breaker_allow(b, &ra), BREAKER_ALLOWED);
	CHECK_INT(breaker_allow(b, &ra), BREAKER_SHORT_CIRCUIT);
	breaker_record(b, &ra, BREAKER_SUCCESS);
	CHECK_INT(breaker_state(b), BREAKER_CLOSED);
	breaker_free(b);
}

static void test_probe_failure_reopens(void)
{
	struct breaker_config cfg = defaults();
	struct breaker *b = make("unit-reopen", &cfg);
	struct breaker_ticket ra = { .retry_after_ms = -1 };

	trip(b, 20);
	now_ms = T0 + 6000;   /* half-open at the first call after open_ms */
	CHECK_INT(breaker_allow(b, &ra), BREAKER_ALLOWED);
	CHECK_INT(breaker_allow(b, &ra), BREAKER_ALLOWED);
	CHECK_INT(breaker_allow(b, &ra), BREAKER_ALLOWED);
	breaker_record(b, &ra, BREAKER_SUCCESS);
	now_ms = T0 + 6100;
	breaker_record(b, &ra, BREAKER_FAILURE);            /* one failed probe */
	CHECK_INT(breaker_state(b), BREAKER_OPEN);
	/* A new open interval from the failure, not from the first opening. */
	CHECK_INT(breaker_allow(b, &ra), BREAKER_SHORT_CIRCUIT);
	CHECK_INT(ra.retry_after_ms, 5000);
	now_ms = T0 + 6200;
	CHECK_INT(breaker_allow(b, &ra), BREAKER_SHORT_CIRCUIT);
	CHECK_INT(ra.retry_after_ms, 4900);
	/* The last probe comes back successful while open: it does not close it. */
	breaker_record(b, &ra, BREAKER_SUCCESS);
	CHECK_INT(breaker_state(b), BREAKER_OPEN);
	now_ms = T0 + 11099;
	CHECK_INT(breaker_allow(b, &ra), BREAKER_SHORT_CIRCUIT);
	CHECK_INT(ra.retry_after_ms, 1);

	/* Half-open again with a full set of probes. */
	now_ms = T0 + 11100;
	CHECK_INT(breaker_allow(b, &ra), BREAKER_ALLOWED);
	CHECK_INT(breaker_allow(b, &ra), BREAKER_ALLOWED);
	CHECK_INT(breaker_allow(b, &ra), BREAKER_ALLOWED);
	CHECK_INT(breaker_allow(b, &ra), BREAKER_SHORT_CIRCUIT);
	/* A timeout is a failed probe too. */
	breaker_record(b, &ra, BREAKER_TIMEOUT);
	CHECK_INT(breaker_state(b), BREAKER_OPEN);
	CHECK_INT(breaker_allow(b, &ra), BREAKER_SHORT_CIRCUIT);
	CHECK_INT(ra.retry_after_ms, 5000);
	breaker_record(b, &ra, BREAKER_SUCCESS);
	breaker_record(b, &ra, BREAKER_SUCCESS);
	CHECK_INT(breaker_state(b), BREAKER_OPEN);

	/* And it can still close after that. */
	now_ms = T0 + 16100;
	for(int i = 0; i < 3; i++)
		CHECK_INT(breaker_allow(b, &ra), BREAKER_ALLOWED);
	for(int i = 0; i < 3; i++)
		breaker_record(b, &ra, BREAKER_SUCCESS);
	CHECK_INT(breaker_state(b), BREAKER_CLOSED);
	breaker_free(b);
}

/* A call allowed while closed that only returns once the breaker is half-open
 * is not one of the probes: its outcome must neither close nor reopen it
 * ("Outcomes of calls allowed before the breaker opened do not move it"). */
static void test_stale_outcome_in_half_open(void)
{
	struct breaker_config cfg = defaults();
	struct breaker *b;
	struct breaker_ticket slow, probe;

	/* A stale success with probes = 1. */
	cfg.probes = 1;
	b = make("unit-stale", &cfg);
	CHECK_INT(breaker_allow(b, &slow), BREAKER_ALLOWED); /* the slow call, still out */
	trip(b, 20);
	now_ms = T0 + 5000;
	CHECK_INT(breaker_allow(b, &probe), BREAKER_ALLOWED); /* the one probe */
	breaker_record(b, &slow, BREAKER_SUCCESS);           /* the slow call returns */
	if(!CHECK_INT(breaker_state(b), BREAKER_HALF_OPEN))
		printf("   a call allowed before the breaker opened closed it while the probe was out\n");
	breaker_record(b, &probe, BREAKER_FAILURE);          /* the probe fails */
	if(!CHECK_INT(breaker_state(b), BREAKER_OPEN))
		printf("   a failed probe did not reopen the breaker\n");
	breaker_free(b);

	/* A stale timeout with probes = 3. */
	cfg.probes = 3;
	b = make("unit-stale", &cfg);
	CHECK_INT(breaker_allow(b, &slow), BREAKER_ALLOWED);
	trip(b, 20);
	now_ms = T0 + 5000;
	CHECK_INT(breaker_allow(b, &probe), BREAKER_ALLOWED);
	breaker_record(b, &slow, BREAKER_TIMEOUT);           /* the slow call times out */
	if(!CHECK_INT(breaker_state(b), BREAKER_HALF_OPEN))
		printf("   a call allowed before the breaker opened reopened it\n");
	breaker_free(b);
}

/* ---- bulkhead --------------------------------------------------------------- */

static void test_bulkhead(void)
{
	struct breaker_config cfg = defaults();
	struct breaker *b;
	struct breaker_counts c;
	struct breaker_ticket ra = { .retry_after_ms = -1 };

	/* Any error would open it: rejections must not count as errors. */
	cfg.max_concurrent = 2;
	cfg.min_requests = 1;
	cfg.error_percent = 1;
	b = make("unit-bulk", &cfg);
	CHECK_INT(breaker_allow(b, &ra), BREAKER_ALLOWED);
	CHECK_INT(breaker_allow(b, &ra), BREAKER_ALLOWED);
	for(int i = 0; i < 50; i++)
		CHECK_INT(breaker_allow(b, &ra), BREAKER_REJECTED);
	CHECK_INT(breaker_state(b), BREAKER_CLOSED);
	breaker_counts(b, &c);
	CHECK_INT(c.rejections, 50);
	CHECK_INT(c.failures, 0);
	CHECK_INT(c.timeouts, 0);
	CHECK_INT(c.short_circuits, 0);

	/* A record frees a slot, one at a time. */
	breaker_record(b, &ra, BREAKER_SUCCESS);
	CHECK_INT(breaker_allow(b, &ra), BREAKER_ALLOWED);
	CHECK_INT(breaker_allow(b, &ra), BREAKER_REJECTED);
	breaker_record(b, &ra, BREAKER_SUCCESS);
	breaker_record(b, &ra, BREAKER_SUCCESS);
	CHECK_INT(breaker_allow(b, &ra), BREAKER_ALLOWED);
	CHECK_INT(breaker_allow(b, &ra), BREAKER_ALLOWED);
	CHECK_INT(breaker_allow(b, &ra), BREAKER_REJECTED);
	/* The last two come back. */
	breaker_record(b, &ra, BREAKER_SUCCESS);
	breaker_record(b, &ra, BREAKER_SUCCESS);
	CHECK_INT(breaker_state(b), BREAKER_CLOSED);
	breaker_counts(b, &c);
	CHECK_INT(c.rejections, 52);
	CHECK_INT(c.successes, 5);
	breaker_free(b);

	/* Failed and timed-out calls free their slots too. */
	cfg = defaults();
	cfg.max_concurrent = 1;
	b = make("unit-bulk1", &cfg);
	CHECK_INT(breaker_allow(b, &ra), BREAKER_ALLOWED);
	CHECK_INT(breaker_allow(b, &ra), BREAKER_REJECTED);
	breaker_record(b, &ra, BREAKER_FAILURE);
	CHECK_INT(breaker_allow(b, &ra), BREAKER_ALLOWED);
	breaker_record(b, &ra, BREAKER_TIMEOUT);
	CHECK_INT(breaker_allow(b, &ra), BREAKER_ALLOWED);
	breaker_record(b, &ra, BREAKER_SUCCESS);
	breaker_free(b);
}

static void test_counts_exact(void)
{
	struct breaker_config cfg = defaults();
	struct breaker *b;
	struct breaker_counts c;
	struct breaker_ticket ra = { 0 };

	cfg.max_concurrent = 3;
	b = make("unit-counts", &cfg);
	breaker_counts(b, &c);
	CHECK_INT(c.successes + c.failures + c.timeouts + c.rejections + c.short_circuits, 0);

	calls(b, 12, BREAKER_SUCCESS);
	calls(b, 3, BREAKER_TIMEOUT);
	calls(b, 4, BREAKER_FAILURE);                  /* 7 of 19 */
	for(int i = 0; i < 3; i++)
		CHECK_INT(breaker_allow(b, &ra), BREAKER_ALLOWED);
	CHECK_INT(breaker_allow(b, &ra), BREAKER_REJECTED);
	CHECK_INT(breaker_allow(b, &ra), BREAKER_REJECTED);
	breaker_record(b, &ra, BREAKER_FAILURE);            /* 8 of 20: closed */
	breaker_record(b, &ra, BREAKER_FAILURE);            /* 9 of 21 */
	breaker_record(b, &ra, BREAKER_SUCCESS);            /* 9 of 22 */
	CHECK_INT(breaker_state(b), BREAKER_CLOSED);
	calls(b, 2, BREAKER_TIMEOUT);                  /* 11 of 24 */
	CHECK_INT(breaker_state(b), BREAKER_CLOSED);
	calls(b, 1, BREAKER_TIMEOUT);                  /* 12 of 25: 48% */
	CHECK_INT(breaker_state(b), BREAKER_CLOSED);
	calls(b, 1, BREAKER_TIMEOUT);                  /* 13 of 26: 50% */
	CHECK_INT(breaker_state(b), BREAKER_OPEN);
	for(int i = 0; i < 7; i++)
		CHECK_INT(breaker_allow(b, &ra), BREAKER_SHORT_CIRCUIT);
	breaker_counts(b, &c);
	CHECK_INT(c.successes, 13);
	CHECK_INT(c.failures, 6);
	CHECK_INT(c.timeouts, 7);
	CHECK_INT(c.rejections, 2);
	CHECK_INT(c.short_circuits, 7);
	breaker_free(b);
}

/* ---- threads ---------------------------------------------------------------- */

#define THREADS 4
#define PER_THREAD 5000

struct worker {
	struct breaker *b;
	int allowed, rejected, other;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct breaker_ticket ra = { 0 };

	for(int i = 0; i < PER_THREAD; i++) {
		switch(breaker_allow(w->b, &ra)) {
		case BREAKER_ALLOWED:
			w->allowed++;
			breaker_record(w->b, &ra, BREAKER_SUCCESS);
			break;
		case BREAKER_REJECTED:
			w->rejected++;
			break;
		default:
			w->other++;
			break;
		}
	}
	return NULL;
}

static void test_threads(void)
{
	struct breaker_config cfg = defaults();
	struct worker w[THREADS];
	pthread_t t[THREADS];
	struct breaker_counts c;
	struct breaker *b;
	int allowed = 0, rejected = 0, other = 0;
	struct breaker_ticket ra = { 0 };

	cfg.max_concurrent = 2;
	b = make("unit-threads", &cfg);
	for(int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ .b = b };
		pthread_create(&t[i], NULL, worker_main, &w[i]);
	}
	for(int i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		allowed += w[i].allowed;
		rejected += w[i].rejected;
		other += w[i].other;
	}
	CHECK_INT(allowed + rejected, THREADS * PER_THREAD);
	CHECK_INT(other, 0);
	breaker_counts(b, &c);
	CHECK_INT(c.successes, allowed);
	CHECK_INT(c.rejections, rejected);
	CHECK_INT(breaker_state(b), BREAKER_CLOSED);
	/* Every slot came back. */
	CHECK_INT(breaker_allow(b, &ra), BREAKER_ALLOWED);
	CHECK_INT(breaker_allow(b, &ra), BREAKER_ALLOWED);
	CHECK_INT(breaker_allow(b, &ra), BREAKER_REJECTED);
	breaker_record(b, &ra, BREAKER_SUCCESS);
	breaker_record(b, &ra, BREAKER_SUCCESS);
	breaker_free(b);
}

/* ---- configuration ---------------------------------------------------------- */

static const char *const suffixes[] = {
	"_BREAKER_WINDOW_MS", "_BREAKER_BUCKETS", "_BREAKER_MIN_REQUESTS", "_BREAKER_ERROR_PERCENT",
	"_BREAKER_OPEN_MS", "_BREAKER_PROBES", "_MAX_CONCURRENT",
};

static void unset_prefix(const char *prefix)
{
	char name[96];
	for(size_t i = 0; i < HR_ARRAY_LEN(suffixes); i++) {
		snprintf(name, sizeof(name), "%s%s", prefix, suffixes[i]);
		unsetenv(name);
	}
}

static void test_config_from_env(void)
{
	struct breaker_config cfg;
	char err[256] = "";

	unset_prefix("UNITBRK");
	memset(&cfg, 0xff, sizeof(cfg));
	CHECK_INT(breaker_config_from_env("UNITBRK", &cfg, err, sizeof(err)), 0);
	CHECK_INT(cfg.window_ms, 10000);
	CHECK_INT(cfg.buckets, 10);
	CHECK_INT(cfg.min_requests, 20);
	CHECK_INT(cfg.error_percent, 50);
	CHECK_INT(cfg.open_ms, 5000);
	CHECK_INT(cfg.probes, 3);
	CHECK_INT(cfg.max_concurrent, 128);

	/* Empty counts as unset. */
	setenv("UNITBRK_BREAKER_PROBES", "", 1);
	CHECK_INT(breaker_config_from_env("UNITBRK", &cfg, err, sizeof(err)), 0);
	CHECK_INT(cfg.probes, 3);

	setenv("UNITBRK_BREAKER_WINDOW_MS", "20000", 1);
	setenv("UNITBRK_BREAKER_BUCKETS", "40", 1);
	setenv("UNITBRK_BREAKER_MIN_REQUESTS", "7", 1);
	setenv("UNITBRK_BREAKER_ERROR_PERCENT", "100", 1);
	setenv("UNITBRK_BREAKER_OPEN_MS", "1", 1);
	setenv("UNITBRK_BREAKER_PROBES", "9", 1);
	setenv("UNITBRK_MAX_CONCURRENT", "3", 1);
	/* Another prefix's settings are not read. */
	setenv("OTHERBRK_BREAKER_PROBES", "5", 1);
	CHECK_INT(breaker_config_from_env("UNITBRK", &cfg, err, sizeof(err)), 0);
	CHECK_INT(cfg.window_ms, 20000);
	CHECK_INT(cfg.buckets, 40);
	CHECK_INT(cfg.min_requests, 7);
	CHECK_INT(cfg.error_percent, 100);
	CHECK_INT(cfg.open_ms, 1);
	CHECK_INT(cfg.probes, 9);
	CHECK_INT(cfg.max_concurrent, 3);
	unsetenv("OTHERBRK_BREAKER_PROBES");
	unset_prefix("UNITBRK");

	/* Bad values are refused, naming the variable. */
	static const struct { const char *var, *value; } bad[] = {
		{ "UNITBRK_BREAKER_WINDOW_MS", "abc" },
		{ "UNITBRK_BREAKER_WINDOW_MS", "99" },
		{ "UNITBRK_BREAKER_WINDOW_MS", "-1" },
		{ "UNITBRK_BREAKER_BUCKETS", "0" },
		{ "UNITBRK_BREAKER_BUCKETS", "101" },
		{ "UNITBRK_BREAKER_MIN_REQUESTS", "0" },
		{ "UNITBRK_BREAKER_MIN_REQUESTS", "1.5" },
		{ "UNITBRK_BREAKER_ERROR_PERCENT", "0" },
		{ "UNITBRK_BREAKER_ERROR_PERCENT", "101" },
		{ "UNITBRK_BREAKER_ERROR_PERCENT", "50%" },
		{ "UNITBRK_BREAKER_OPEN_MS", "0" },
		{ "UNITBRK_BREAKER_OPEN_MS", "5s" },
		{ "UNITBRK_BREAKER_PROBES", "0" },
		{ "UNITBRK_BREAKER_PROBES", " 3" },
		{ "UNITBRK_MAX_CONCURRENT", "0" },
		{ "UNITBRK_MAX_CONCURRENT", "99999999999999999999" },
	};
	for(size_t i = 0; i < HR_ARRAY_LEN(bad); i++) {
		unset_prefix("UNITBRK");
		setenv(bad[i].var, bad[i].value, 1);
		err[0] = '\0';
		if(!CHECK_INT(breaker_config_from_env("UNITBRK", &cfg, err, sizeof(err)), -1))
			printf("   %s=\"%s\" was accepted\n", bad[i].var, bad[i].value);
		CHECK_CONTAINS(err, bad[i].var);
	}
	unset_prefix("UNITBRK");
}

/* ---- metrics ---------------------------------------------------------------- */

static int count_lines(const char *text, const char *line)
{
	int n = 0;
	size_t len = strlen(line);

	for(const char *p = text; (p = strstr(p, line)) != NULL; p += len)
		if((p == text || p[-1] == '\n') && (p[len] == '\n' || p[len] == '\0'))
			n++;
	return n;
}

static char *render(void)
{
	struct buf out;
	buf_init(&out, 4 * 1024 * 1024);
	metrics_render(&out);
	return buf_detach(&out, NULL);
}

static void test_metrics(void)
{
	struct breaker_config cfg = defaults();
	struct breaker *b = make("x", &cfg);
	struct breaker_ticket ra = { 0 };

	CHECK_INT(tu_metric_series("breaker_state{dependency=\"x\"}"), 0);
	CHECK_INT(tu_metric_series("breaker_calls_total{dependency=\"x\",outcome=\"short_circuited\"}"), 0);
	calls(b, 5, BREAKER_SUCCESS);
	calls(b, 12, BREAKER_FAILURE);
	calls(b, 3, BREAKER_TIMEOUT);                  /* 15 of 20: open */
	for(int i = 0; i < 4; i++)
		breaker_allow(b, &ra);
	CHECK_INT(tu_metric_series("breaker_state{dependency=\"x\"}"), 1);
	CHECK_INT(tu_metric_series("breaker_calls_total{dependency=\"x\",outcome=\"short_circuited\"}"), 4);
	CHECK_INT(tu_metric_series("breaker_calls_total{dependency=\"x\",outcome=\"success\"}"), 5);
	CHECK_INT(tu_metric_series("breaker_calls_total{dependency=\"x\",outcome=\"failure\"}"), 12);
	CHECK_INT(tu_metric_series("breaker_calls_total{dependency=\"x\",outcome=\"timeout\"}"), 3);
	CHECK_INT(tu_metric_series("breaker_calls_total{dependency=\"x\",outcome=\"rejected\"}"), 0);
	now_ms = T0 + 5000;
	CHECK_INT(tu_metric_series("breaker_state{dependency=\"x\"}"), 2);

	/* Gone once freed (and no collector left pointing at freed memory). */
	breaker_free(b);
	CHECK_INT(tu_metric_series("breaker_state{dependency=\"x\"}"), -1);
	CHECK_INT(tu_metric_series("breaker_calls_total{dependency=\"x\",outcome=\"short_circuited\"}"), -1);
	CHECK_INT(tu_metric_sum("breaker_calls_total"), 0);
}

/* A service with two dependencies exposes both in one valid text: each metric
 * family has one HELP and one TYPE line (Prometheus refuses a second TYPE
 * line for a family, and wants a family's samples together). */
static void test_metrics_two_breakers(void)
{
	struct breaker_config cfg = defaults();
	struct breaker *a = make("alpha", &cfg), *b = make("beta", &cfg);
	char *text;
	bool ok;

	call(a, BREAKER_SUCCESS);
	call(b, BREAKER_FAILURE);
	CHECK_INT(tu_metric_series("breaker_calls_total{dependency=\"alpha\",outcome=\"success\"}"), 1);
	CHECK_INT(tu_metric_series("breaker_calls_total{dependency=\"beta\",outcome=\"failure\"}"), 1);
	CHECK_INT(tu_metric_series("breaker_calls_total{dependency=\"alpha\",outcome=\"failure\"}"), 0);
	text = render();
	ok = CHECK_INT(count_lines(text, "# TYPE breaker_state gauge"), 1);
	ok = CHECK_INT(count_lines(text, "# TYPE breaker_calls_total counter"), 1) && ok;
	if(!ok)
		printf("   metrics text:\n%s", text);
	free(text);
	breaker_free(b);
	breaker_free(a);
	CHECK_INT(tu_metric_series("breaker_state{dependency=\"alpha\"}"), -1);
	CHECK_INT(tu_metric_series("breaker_state{dependency=\"beta\"}"), -1);
}

int main(void)
{
	log_init("unit-breaker", LOG_ERROR);
	RUN(test_min_requests);
	RUN(test_threshold_boundary);
	RUN(test_outcomes);
	RUN(test_window_rolls);
	RUN(test_open_short_circuits);
	RUN(test_half_open_closes);
	RUN(test_probe_failure_reopens);
	RUN(test_stale_outcome_in_half_open);
	RUN(test_bulkhead);
	RUN(test_counts_exact);
	RUN(test_threads);
	RUN(test_config_from_env);
	RUN(test_metrics);
	RUN(test_metrics_two_breakers);
	return check_done();
}

/*
 * reconcile.c - settles orders left PENDING.
 *
 * An order stays PENDING when its payment call's outcome is unknown (payment
 * timed out after the request was sent) or when order died mid-call. The
 * payment feed settles those that were charged; this thread settles the
 * rest. Once an order's lease has run out (no request works on it any more)
 * it asks payment to void the orderId: payment answers with the payment the
 * order has, if any (then the order is PAID, or CANCELLED), or records a
 * VOIDED row that makes any later charge for that orderId impossible (then
 * the order is PAYMENT_FAILED). Never a second charge, never a lost one.
 */
#include "hearty.h"
#include "order.h"
#include "log.h"
#include "validate.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define RECONCILE_BATCH 50

struct reconciler {
	struct order_svc *svc;
	int interval_ms;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	atomic_bool stopping;
};

struct abandoned {
	int64_t now_ms;
	int n;
	struct order orders[RECONCILE_BATCH];
};

static int abandoned_fn(struct db *db, void *arg)
{
	static const char sql[] = "SELECT " ORDER_COLS " FROM orders WHERE status = 'PENDING'"
				  " AND (lease_until IS NULL OR lease_until < ?) ORDER BY id LIMIT ?";
	struct abandoned *a = arg;
	struct db_stmt *s = db_prepare(db, sql);
	int rc;

	if(!s)
		return HR_ERR_STORE;
	db_bind_int(s, 1, a->now_ms);
	db_bind_int(s, 2, RECONCILE_BATCH);
	for(rc = db_step(s); rc == DB_ROW && a->n < RECONCILE_BATCH; rc = db_step(s))
		order_from_row(&a->orders[a->n++], s);
	return rc == DB_ROW || rc == DB_DONE ? HR_OK : rc;
}

struct settling {
	struct pay_event pe;
	const char *pay_status;
	char reason[256];
};

static int settle_fn(struct db *db, void *arg)
{
	struct settling *st = arg;

	if(strcmp(st->pay_status, "VOIDED") == 0)
		return order_settle_void(db, st->pe.order_id);
	return order_settle_payment(db, &st->pe, st->pay_status, st->reason, sizeof(st->reason));
}

/* Settles one order. Returns false when payment could not be asked (stop this round). */
static bool reconcile_one(struct order_svc *svc, const struct order *o)
{
	struct dependency_result dr;
	struct settling st = { .pe = { .order_id = o->id, .amount = o->amount, .customer_id = o->customer_id } };
	json_t *body, *answer = NULL;
	int64_t pay_id = 0;
	int rc;

	body = json_pack("{s:I,s:s,s:I}", "orderId", (json_int_t)o->id, "customerId", o->customer_id,
			 "amount", (json_int_t)o->amount);
	/* Voiding is idempotent per orderId: safe to repeat. */
	rc = dependency_post_json(svc->payment, "/pays/void", body, true, &dr, &answer);
	json_decref(body);
	st.pay_status = json_string_value(json_object_get(answer, "status"));
	if(rc == HR_OK && (dr.status == 200 || dr.status == 201) && st.pay_status &&
	   validate_int_member(answer, "payId", 1, HR_MAX_ID, &pay_id)) {
		st.pe.pay_id = pay_id;
		rc = store_write(svc->store, settle_fn, &st);
		log_event(rc ? LOG_WARN : LOG_INFO, "pending order reconciled",
			  json_pack("{s:I,s:s,s:s}", "orderId", (json_int_t)o->id, "payment", st.pay_status,
				    "result", rc ? st.reason : "settled"));
	} else if(rc == HR_OK && dr.status >= 400 && dr.status < 500) {
		log_event(LOG_ERROR, "payment refused to void a pending order", json_pack("{s:I,s:i}",
			  "orderId", (json_int_t)o->id, "status", dr.status));
	} else {
		rc = -1;
	}
	json_decref(answer);
	dependency_result_release(&dr);
	return rc != -1;
}

static void reconcile_round(struct reconciler *r)
{
	struct abandoned *a = calloc(1, sizeof(*a));

	if(!a)
		return;
	a->now_ms = hr_now_ms();
	if(store_read(r->svc->store, abandoned_fn, a) == HR_OK) {
		for(int i = 0; i < a->n && !r->stopping; i++)
			if(!reconcile_one(r->svc, &a->orders[i]))
				break;
	}
	free(a);
}

static void *reconciler_main(void *arg)
{
	struct reconciler *r = arg;
	struct timespec ts;

	pthread_mutex_lock(&r->lock);
	while(!r->stopping) {
		pthread_mutex_unlock(&r->lock);
		reconcile_round(r);
		pthread_mutex_lock(&r->lock);
		hr_deadline(r->interval_ms, &ts);
		if(!r->stopping)
			pthread_cond_timedwait(&r->cond, &r->lock, &ts);
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

struct reconciler *reconciler_start(struct order_svc *svc, int interval_ms, char *err, size_t errlen)
{
	struct reconciler *r = calloc(1, sizeof(*r));

	if(!r) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->svc = svc;
	r->interval_ms = interval_ms;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	if(pthread_create(&r->thread, NULL, reconciler_main, r)) {
		snprintf(err, errlen, "cannot start the reconciler thread");
		pthread_mutex_destroy(&r->lock);
		pthread_cond_destroy(&r->cond);
		free(r);
		return NULL;
	}
	return r;
}

void reconciler_stop(struct reconciler *r)
{
	if(!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->stopping = true;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	pthread_join(r->thread, NULL);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->cond);
	free(r);
}

/*
 * settle.c - the order's side of the payment feed.
 *
 * A synchronous call can lose its answer: payment timed out after charging,
 * order was killed while waiting, or a cancel's reply never came back. The
 * payment feed carries the truth, and order applies it exactly once (the
 * consumer keeps its position in order.db), so an order always ends in the
 * state its payment is in.
 */
#include "hearty.h"
#include "order.h"
#include "events.h"
#include "log.h"

#include <stdio.h>
#include <string.h>

static const char sql_find[] = "SELECT " ORDER_COLS ", idem_key FROM orders WHERE id = ?";

/* PENDING -> PAID, with the answer a retried request will replay. */
static int settle_paid(struct db *db, const struct pay_event *pe, char *reason, size_t rlen)
{
	static const char sql[] = "UPDATE orders SET status = 'PAID', pay_id = ?, mileage_points = 0,"
				  " mileage_status = 'PENDING', lease_until = NULL, resp_status = ?,"
				  " resp_body = ?, updated_at = ? WHERE id = ? AND status = 'PENDING'";
	struct db_stmt *s = db_prepare(db, sql_find);
	struct order o;
	bool keyed;
	char *body = NULL;
	int rc;

	if(!s)
		return HR_ERR_STORE;
	db_bind_int(s, 1, pe->order_id);
	rc = db_step(s);
	if(rc != DB_ROW)
		return rc == DB_DONE ? HR_OK : rc;   /* a payment made outside order: not ours */
	order_from_row(&o, s);
	keyed = !db_col_null(s, 12);
	if(strcmp(o.status, "PENDING") != 0) {
		if(strcmp(o.status, "PAYMENT_FAILED") == 0)
			log_event(LOG_WARN, "payment approved for a failed order",
				  json_pack("{s:I,s:I}", "orderId", (json_int_t)o.id, "payId", (json_int_t)pe->pay_id));
		return HR_OK;
	}
	if(o.amount != pe->amount || strcmp(o.customer_id, pe->customer_id) != 0) {
		snprintf(reason, rlen, "payment %lld does not match order %lld (amount or customer)",
			 (long long)pe->pay_id, (long long)o.id);
		return HR_ERR_REJECTED;
	}
	o.pay_id = pe->pay_id;
	o.points = 0;
	snprintf(o.status, sizeof(o.status), "PAID");
	snprintf(o.mileage_status, sizeof(o.mileage_status), "PENDING");
	hr_time_iso(hr_now_ms(), o.updated_at, sizeof(o.updated_at));
	if(keyed) {
		json_t *j = order_json(&o);
		body = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
		json_decref(j);
		if(!body)
			return HR_ERR_NOMEM;
	}
	s = db_prepare(db, sql);
	if(!s) {
		free(body);
		return HR_ERR_STORE;
	}
	db_bind_int(s, 1, o.pay_id);
	if(keyed) {
		db_bind_int(s, 2, 201);
		db_bind_text(s, 3, body);
	}
	db_bind_text(s, 4, o.updated_at);
	db_bind_int(s, 5, o.id);
	rc = db_step(s);
	free(body);
	return rc == DB_DONE ? HR_OK : HR_ERR_STORE;
}

/* PAID -> CANCELLED, when it is this order's payment. */
static int settle_cancelled(struct db *db, const struct pay_event *pe)
{
	static const char sql[] = "UPDATE orders SET status = 'CANCELLED', updated_at = ?"
				  " WHERE id = ? AND pay_id = ? AND status = 'PAID'";
	struct db_stmt *s = db_prepare(db, sql);
	char ts[32];

	if(!s)
		return HR_ERR_STORE;
	hr_time_iso(hr_now_ms(), ts, sizeof(ts));
	db_bind_text(s, 1, ts);
	db_bind_int(s, 2, pe->order_id);
	db_bind_int(s, 3, pe->pay_id);
	return db_step(s) == DB_DONE ? HR_OK : HR_ERR_STORE;
}

int orders_on_payment_event(struct db *db, const struct event *ev, char *reason, size_t rlen, void *ctx)
{
	struct pay_event pe;
	bool approved = strcmp(ev->type, EV_PAY_APPROVED) == 0;

	if(!approved && strcmp(ev->type, EV_PAY_CANCELLED) != 0) {
		snprintf(reason, rlen, "unknown event type \"%.64s\"", ev->type);
		return HR_ERR_REJECTED;
	}
	if(pay_event_parse(ev->data, &pe, reason, rlen))
		return HR_ERR_REJECTED;
	return approved ? settle_paid(db, &pe, reason, rlen) : settle_cancelled(db, &pe);
}

int order_settle_payment(struct db *db, const struct pay_event *pe, const char *pay_status,
			 char *reason, size_t rlen)
{
	int rc = settle_paid(db, pe, reason, rlen);

	if(rc == HR_OK && strcmp(pay_status, "CANCELLED") == 0)
		rc = settle_cancelled(db, pe);
	return rc;
}

void order_failed_answer(struct response *res, int64_t order_id, int retry_after_s)
{
	response_unavailable(res, retry_after_s, "payment is unavailable; order %lld was not paid,"
			     " place it again later", (long long)order_id);
}

int order_settle_void(struct db *db, int64_t order_id)
{
	static const char sql[] = "UPDATE orders SET status = 'PAYMENT_FAILED', lease_until = NULL,"
				  " resp_status = CASE WHEN idem_key IS NULL THEN NULL ELSE ? END,"
				  " resp_body = CASE WHEN idem_key IS NULL THEN NULL ELSE ? END,"
				  " updated_at = ? WHERE id = ? AND status = 'PENDING'";
	struct response answer = { 0 };
	struct db_stmt *s = db_prepare(db, sql);
	char ts[32];
	int rc;

	if(!s)
		return HR_ERR_STORE;
	order_failed_answer(&answer, order_id, 1);
	hr_time_iso(hr_now_ms(), ts, sizeof(ts));
	db_bind_int(s, 1, answer.status);
	db_bind_text(s, 2, answer.body);
	db_bind_text(s, 3, ts);
	db_bind_int(s, 4, order_id);
	rc = db_step(s) == DB_DONE ? HR_OK : HR_ERR_STORE;
	response_release(&answer);
	return rc;
}

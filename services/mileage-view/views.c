/*
 * views.c - projecting events into the read model, and serving it.
 *
 * The two feeds interleave in no fixed order, so every update is written to
 * give the same row whatever the interleaving: statuses only move forward
 * (a CANCELLED is never overwritten by the approval or saving that preceded
 * it in its own feed), and updated_at is the latest event time seen. A
 * rebuild therefore reproduces every row exactly.
 */
#include "hearty.h"
#include "view.h"
#include "api.h"
#include "events.h"

#include <stdio.h>
#include <string.h>

/* Portable "greatest of two times" (SQLite has MAX(a,b), PostgreSQL GREATEST). */
#define LATER_TIME "CASE WHEN excluded.updated_at > mileage_views.updated_at" \
	" THEN excluded.updated_at ELSE mileage_views.updated_at END"

static int upsert_payment(struct db *db, const struct pay_event *pe, const char *status, const char *time)
{
	static const char sql[] =
		"INSERT INTO mileage_views(pay_id, order_id, customer_id, amount, pay_status, updated_at)"
		" VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(pay_id) DO UPDATE SET"
		" order_id = excluded.order_id, customer_id = excluded.customer_id,"
		" amount = excluded.amount,"
		" pay_status = CASE WHEN mileage_views.pay_status = 'CANCELLED' THEN 'CANCELLED'"
		" ELSE excluded.pay_status END,"
		" updated_at = " LATER_TIME;
	struct db_stmt *s = db_prepare(db, sql);

	if(!s)
		return HR_ERR_STORE;
	db_bind_int(s, 1, pe->pay_id);
	db_bind_int(s, 2, pe->order_id);
	db_bind_text(s, 3, pe->customer_id);
	db_bind_int(s, 4, pe->amount);
	db_bind_text(s, 5, status);
	db_bind_text(s, 6, time);
	return db_step(s) == DB_DONE ? HR_OK : HR_ERR_STORE;
}

static int upsert_mileage(struct db *db, const struct mileage_event *me, const char *status, const char *time)
{
	static const char sql[] =
		"INSERT INTO mileage_views(pay_id, customer_id, points, mileage_status, updated_at)"
		" VALUES (?, ?, ?, ?, ?) ON CONFLICT(pay_id) DO UPDATE SET"
		" customer_id = excluded.customer_id,"
		" points = CASE WHEN mileage_views.mileage_status = 'SAVED' THEN mileage_views.points"
		" ELSE excluded.points END,"
		" mileage_status = CASE WHEN mileage_views.mileage_status = 'CANCELLED' THEN 'CANCELLED'"
		" ELSE excluded.mileage_status END,"
		" updated_at = " LATER_TIME;
	struct db_stmt *s = db_prepare(db, sql);

	if(!s)
		return HR_ERR_STORE;
	db_bind_int(s, 1, me->pay_id);
	db_bind_text(s, 2, me->customer_id);
	db_bind_int(s, 3, me->points);
	db_bind_text(s, 4, status);
	db_bind_text(s, 5, time);
	return db_step(s) == DB_DONE ? HR_OK : HR_ERR_STORE;
}

/* Recomputes one customer's summary from their rows: correct by construction. */
static int refresh_customer(struct db *db, const char *customer_id)
{
	static const char sql[] =
		"INSERT INTO customers(customer_id, balance, earned, cancelled, payments)"
		" SELECT customer_id,"
		" SUM(CASE WHEN mileage_status = 'SAVED' THEN points ELSE 0 END),"
		" SUM(CASE WHEN mileage_status IN ('SAVED', 'CANCELLED') THEN COALESCE(points, 0) ELSE 0 END),"
		" SUM(CASE WHEN mileage_status = 'CANCELLED' THEN COALESCE(points, 0) ELSE 0 END),"
		" COUNT(*) FROM mileage_views WHERE customer_id = ? GROUP BY customer_id"
		" ON CONFLICT(customer_id) DO UPDATE SET balance = excluded.balance,"
		" earned = excluded.earned, cancelled = excluded.cancelled, payments = excluded.payments";
	struct db_stmt *s = db_prepare(db, sql);

	if(!s)
		return HR_ERR_STORE;
	db_bind_text(s, 1, customer_id);
	return db_step(s) == DB_DONE ? HR_OK : HR_ERR_STORE;
}

static const char *event_time(const struct event *ev)
{
	return ev->time[0] ? ev->time : "1970-01-01T00:00:00.000Z";
}

int views_on_payment_event(struct db *db, const struct event *ev, char *reason, size_t rlen, void *ctx)
{
	struct pay_event pe;
	const char *status;
	int rc;

	if(strcmp(ev->type, EV_PAY_APPROVED) == 0) {
		status = "APPROVED";
	} else if(strcmp(ev->type, EV_PAY_CANCELLED) == 0) {
		status = "CANCELLED";
	} else {
		snprintf(reason, rlen, "unknown event type \"%.64s\"", ev->type);
		return HR_ERR_REJECTED;
	}
	if(pay_event_parse(ev->data, &pe, reason, rlen))
		return HR_ERR_REJECTED;
	rc = upsert_payment(db, &pe, status, event_time(ev));
	return rc ? rc : refresh_customer(db, pe.customer_id);
}

int views_on_mileage_event(struct db *db, const struct event *ev, char *reason, size_t rlen, void *ctx)
{
	struct mileage_event me;
	const char *status;
	int rc;

	if(strcmp(ev->type, EV_MILEAGE_SAVED) == 0) {
		status = "SAVED";
	} else if(strcmp(ev->type, EV_MILEAGE_CANCELLED) == 0) {
		status = "CANCELLED";
	} else {
		snprintf(reason, rlen, "unknown event type \"%.64s\"", ev->type);
		return HR_ERR_REJECTED;
	}
	if(mileage_event_parse(ev->data, &me, reason, rlen))
		return HR_ERR_REJECTED;
	rc = upsert_mileage(db, &me, status, event_time(ev));
	return rc ? rc : refresh_customer(db, me.customer_id);
}

/* ---- reads -------------------------------------------------------------- */

static void set_int_or_null(json_t *o, const char *key, struct db_stmt *s, int col)
{
	json_object_set_new(o, key, db_col_null(s, col) ? json_null() : json_integer(db_col_int(s, col)));
}

static json_t *view_row_json(struct db_stmt *s)
{
	json_t *o = json_object();

	if(!o)
		return NULL;
	json_object_set_new(o, "payId", json_integer(db_col_int(s, 0)));
	set_int_or_null(o, "orderId", s, 1);
	json_object_set_new(o, "customerId", json_string(db_col_text(s, 2)));
	set_int_or_null(o, "amount", s, 3);
	set_int_or_null(o, "points", s, 4);
	api_set_string_or_null(o, "payStatus", db_col_null(s, 5) ? NULL : db_col_text(s, 5));
	api_set_string_or_null(o, "mileageStatus", db_col_null(s, 6) ? NULL : db_col_text(s, 6));
	json_object_set_new(o, "updatedAt", json_string(db_col_text(s, 7)));
	return o;
}

struct view_read {
	char customer[72];
	struct api_page page;
	json_t *out;            /* a customer's summary */
};

static int view_list_fn(struct db *db, void *arg)
{
	static const char sql[] = "SELECT pay_id, order_id, customer_id, amount, points, pay_status,"
				  " mileage_status, updated_at FROM mileage_views WHERE customer_id = ?"
				  " AND pay_id > ? ORDER BY pay_id LIMIT ?";
	struct view_read *vr = arg;
	struct db_stmt *s = db_prepare(db, sql);

	if(!s)
		return HR_ERR_STORE;
	db_bind_text(s, 1, vr->customer);
	db_bind_int(s, 2, vr->page.after);
	db_bind_int(s, 3, vr->page.limit + 1);
	return api_page_collect(s, &vr->page, view_row_json);
}

static void views_list(struct request *req, struct response *res, void *ctx)
{
	struct view *v = ctx;
	struct view_read vr = { 0 };

	if(api_query_customer(req, res, vr.customer, sizeof(vr.customer)) &&
	   api_list_params(req, res, &vr.page.after, &vr.page.limit))
		api_page_answer(res, v->store, view_list_fn, &vr, &vr.page, "payId");
}

static int customer_get_fn(struct db *db, void *arg)
{
	static const char sql[] = "SELECT customer_id, balance, earned, cancelled, payments"
				  " FROM customers WHERE customer_id = ?";
	struct view_read *vr = arg;
	struct db_stmt *s = db_prepare(db, sql);
	int rc;

	if(!s)
		return HR_ERR_STORE;
	db_bind_text(s, 1, vr->customer);
	rc = db_step(s);
	if(rc != DB_ROW)
		return rc == DB_DONE ? HR_ERR_NOT_FOUND : rc;
	vr->out = json_pack("{s:s,s:I,s:I,s:I,s:I}", "customerId", db_col_text(s, 0),
			    "balance", (json_int_t)db_col_int(s, 1), "earned", (json_int_t)db_col_int(s, 2),
			    "cancelled", (json_int_t)db_col_int(s, 3), "payments", (json_int_t)db_col_int(s, 4));
	return vr->out ? HR_OK : HR_ERR_NOMEM;
}

static void customers_get(struct request *req, struct response *res, void *ctx)
{
	struct view *v = ctx;
	struct view_read vr = { 0 };
	int rc;

	if(!api_path_customer(req, res, vr.customer, sizeof(vr.customer)))
		return;
	rc = store_read(v->store, customer_get_fn, &vr);
	if(rc == HR_ERR_NOT_FOUND)
		response_error(res, 404, "not_found", "no mileage for customer %s", vr.customer);
	else if(rc)
		api_store_error(res, rc);
	else
		response_json(res, 200, vr.out);
}

int views_routes(struct server *srv, struct view *v)
{
	return server_route(srv, "GET", "/mileageViews", views_list, v, 0) ||
	       server_route(srv, "GET", "/mileageViews/customers/{customerId}", customers_get, v, 0) ? -1 : 0;
}

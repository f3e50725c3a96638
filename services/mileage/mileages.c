/* mileages.c - the points ledger: accrual, cancellation, reads. */
#include "hearty.h"
#include "mileage.h"
#include "api.h"
#include "events.h"

#include <stdio.h>
#include <string.h>

#define MILEAGE_COLS "pay_id, customer_id, amount, points, status, created_at, updated_at"

static json_t *mileage_json(struct db_stmt *s)
{
	return json_pack("{s:I,s:s,s:I,s:I,s:s,s:s,s:s}",
			 "payId", (json_int_t)db_col_int(s, 0), "customerId", db_col_text(s, 1),
			 "amount", (json_int_t)db_col_int(s, 2), "points", (json_int_t)db_col_int(s, 3),
			 "status", db_col_text(s, 4), "createdAt", db_col_text(s, 5),
			 "updatedAt", db_col_text(s, 6));
}

static const char sql_find[] = "SELECT " MILEAGE_COLS " FROM mileages WHERE pay_id = ?";

/* Writes a ledger row and its event. */
static int ledger_insert(struct db *db, const struct pay_event *pe, int64_t points, const char *status,
			 const char *ev_type)
{
	static const char sql[] = "INSERT INTO mileages(pay_id, customer_id, amount, points, status,"
				  " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)";
	struct db_stmt *s = db_prepare(db, sql);
	struct mileage_event me = { pe->pay_id, points, pe->customer_id };
	char ts[32];
	json_t *data;
	int rc;

	if(!s)
		return HR_ERR_STORE;
	hr_time_iso(hr_now_ms(), ts, sizeof(ts));
	db_bind_int(s, 1, pe->pay_id);
	db_bind_text(s, 2, pe->customer_id);
	db_bind_int(s, 3, pe->amount);
	db_bind_int(s, 4, points);
	db_bind_text(s, 5, status);
	db_bind_text(s, 6, ts);
	db_bind_text(s, 7, ts);
	rc = db_step(s);
	if(rc != DB_DONE)
		return rc;
	data = mileage_event_data(&me);
	rc = data ? outbox_append(db, ev_type, data) : HR_ERR_NOMEM;
	json_decref(data);
	return rc;
}

struct accrual {
	struct mileage *m;
	struct pay_event pe;
	bool created;
	json_t *row;        /* out: the ledger row, when asked for (may stay NULL) */
};

/* Accrues once per payId. HR_ERR_CONFLICT when the payment was cancelled first. */
static int accrue(struct db *db, struct accrual *a)
{
	struct db_stmt *s = db_prepare(db, sql_find);
	int64_t points = a->pe.amount * a->m->rate_bp / 10000; /* amount <= 10^12, rate <= 10^4: no overflow */
	int rc;

	if(!s)
		return HR_ERR_STORE;
	db_bind_int(s, 1, a->pe.pay_id);
	rc = db_step(s);
	if(rc == DB_ROW) {
		if(strcmp(db_col_text(s, 4), "CANCELLED") == 0)
			return HR_ERR_CONFLICT;
		a->row = mileage_json(s);
		return HR_OK;
	}
	if(rc != DB_DONE)
		return rc;
	rc = ledger_insert(db, &a->pe, points, "SAVED", EV_MILEAGE_SAVED);
	if(rc)
		return rc;
	a->created = true;
	s = db_prepare(db, sql_find);
	if(!s)
		return HR_ERR_STORE;
	db_bind_int(s, 1, a->pe.pay_id);
	if(db_step(s) == DB_ROW)
		a->row = mileage_json(s);
	return HR_OK;
}

/* Removes a payment's points, or records the cancellation before any accrual. */
static int cancel(struct db *db, const struct pay_event *pe)
{
	static const char sql_cancel[] = "UPDATE mileages SET status = 'CANCELLED', updated_at = ?"
					 " WHERE pay_id = ?";
	struct db_stmt *s = db_prepare(db, sql_find);
	struct mileage_event me = { .pay_id = pe->pay_id };
	char ts[32];
	json_t *data;
	int rc;

	if(!s)
		return HR_ERR_STORE;
	db_bind_int(s, 1, pe->pay_id);
	rc = db_step(s);
	if(rc == DB_DONE)
		return ledger_insert(db, pe, 0, "CANCELLED", EV_MILEAGE_CANCELLED);
	if(rc != DB_ROW)
		return rc;
	if(strcmp(db_col_text(s, 4), "CANCELLED") == 0)
		return HR_OK;
	me.points = db_col_int(s, 3);
	data = json_pack("{s:I,s:s,s:I}", "payId", (json_int_t)pe->pay_id,
			 "customerId", db_col_text(s, 1), "points", (json_int_t)me.points);
	hr_time_iso(hr_now_ms(), ts, sizeof(ts));
	s = db_prepare(db, sql_cancel);
	if(!s || !data) {
		json_decref(data);
		return s ? HR_ERR_NOMEM : HR_ERR_STORE;
	}
	db_bind_text(s, 1, ts);
	db_bind_int(s, 2, pe->pay_id);
	rc = db_step(s);
	if(rc == DB_DONE)
		rc = outbox_append(db, EV_MILEAGE_CANCELLED, data);
	json_decref(data);
	return rc;
}

int mileages_on_payment_event(struct db *db, const struct event *ev, char *reason, size_t rlen, void *ctx)
{
	struct accrual a = { .m = ctx };
	int rc;

	if(strcmp(ev->type, EV_PAY_APPROVED) != 0 && strcmp(ev->type, EV_PAY_CANCELLED) != 0) {
		snprintf(reason, rlen, "unknown event type \"%.64s\"", ev->type);
		return HR_ERR_REJECTED;
	}
	if(pay_event_parse(ev->data, &a.pe, reason, rlen))
		return HR_ERR_REJECTED;
	if(strcmp(ev->type, EV_PAY_CANCELLED) == 0)
		return cancel(db, &a.pe);
	rc = accrue(db, &a);
	json_decref(a.row);
	/* Approved after cancelled: the cancellation wins, nothing to do. */
	return rc == HR_ERR_CONFLICT ? HR_OK : rc;
}

static int accrue_fn(struct db *db, void *arg)
{
	return accrue(db, arg);
}

static void mileages_create(struct request *req, struct response *res, void *ctx)
{
	struct accrual a = { .m = ctx };
	json_t *root;
	const struct field fields[] = {
		{ "payId", FIELD_INT, true, 1, HR_MAX_ID, NULL, &a.pe.pay_id, NULL, NULL },
		{ "customerId", FIELD_STRING, true, 1, 64, check_customer_id, NULL, &a.pe.customer_id, NULL },
		{ "amount", FIELD_INT, true, 1, HR_MAX_AMOUNT, NULL, &a.pe.amount, NULL, NULL },
	};
	int rc;

	if(!api_body(req, res, fields, HR_ARRAY_LEN(fields), &root))
		return;
	rc = store_write(a.m->store, accrue_fn, &a);
	if(rc == HR_ERR_CONFLICT) {
		response_error(res, 409, "conflict", "payment %lld was cancelled; no points",
			       (long long)a.pe.pay_id);
	} else if(rc || !a.row) {
		api_store_error(res, rc ? rc : HR_ERR_NOMEM);
	} else {
		response_json(res, a.created ? 201 : 200, a.row);
		a.row = NULL;
	}
	json_decref(a.row);
	json_decref(root);
}

struct mileage_read {
	int64_t id;
	json_t *out;
};

static int mileage_get_fn(struct db *db, void *arg)
{
	struct mileage_read *mr = arg;
	struct db_stmt *s = db_prepare(db, sql_find);
	int rc;

	if(!s)
		return HR_ERR_STORE;
	db_bind_int(s, 1, mr->id);
	rc = db_step(s);
	if(rc == DB_ROW)
		mr->out = mileage_json(s);
	return rc == DB_ROW ? HR_OK : rc == DB_DONE ? HR_ERR_NOT_FOUND : rc;
}

static void mileages_get(struct request *req, struct response *res, void *ctx)
{
	struct mileage *m = ctx;
	struct mileage_read mr = { 0 };
	int rc;

	if(!api_path_id(req, res, "payId", &mr.id))
		return;
	rc = store_read(m->store, mileage_get_fn, &mr);
	if(rc == HR_ERR_NOT_FOUND)
		response_error(res, 404, "not_found", "no mileage for payment %lld", (long long)mr.id);
	else if(rc)
		api_store_error(res, rc);
	else
		response_json(res, 200, mr.out);
}

struct mileage_list {
	char customer[72];
	struct api_page page;
};

static int mileage_list_fn(struct db *db, void *arg)
{
	static const char sql[] = "SELECT " MILEAGE_COLS " FROM mileages WHERE customer_id = ?"
				  " AND pay_id > ? ORDER BY pay_id LIMIT ?";
	struct mileage_list *ml = arg;
	struct db_stmt *s = db_prepare(db, sql);

	if(!s)
		return HR_ERR_STORE;
	db_bind_text(s, 1, ml->customer);
	db_bind_int(s, 2, ml->page.after);
	db_bind_int(s, 3, ml->page.limit + 1);
	return api_page_collect(s, &ml->page, mileage_json);
}

static void mileages_list(struct request *req, struct response *res, void *ctx)
{
	struct mileage *m = ctx;
	struct mileage_list ml = { 0 };

	if(api_query_customer(req, res, ml.customer, sizeof(ml.customer)) &&
	   api_list_params(req, res, &ml.page.after, &ml.page.limit))
		api_page_answer(res, m->store, mileage_list_fn, &ml, &ml.page, "payId");
}

int mileages_routes(struct server *srv, struct mileage *m)
{
	return server_route(srv, "POST", "/mileages", mileages_create, m, 0) ||
	       server_route(srv, "GET", "/mileages", mileages_list, m, 0) ||
	       server_route(srv, "GET", "/mileages/{payId}", mileages_get, m, 0) ? -1 : 0;
}

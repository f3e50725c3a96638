/* pays.c - the payments resource. */
#include "hearty.h"
#include "payment.h"
#include "api.h"
#include "dependency.h"
#include "events.h"
#include "log.h"

#include <stdio.h>
#include <string.h>

#define PAY_COLS "id, order_id, customer_id, amount, status, created_at, updated_at"

/* The columns of PAY_COLS as the API's JSON. */
static json_t *pay_json(struct db_stmt *s)
{
	return json_pack("{s:I,s:I,s:s,s:I,s:s,s:s,s:s}",
			 "payId", (json_int_t)db_col_int(s, 0), "orderId", (json_int_t)db_col_int(s, 1),
			 "customerId", db_col_text(s, 2), "amount", (json_int_t)db_col_int(s, 3),
			 "status", db_col_text(s, 4), "createdAt", db_col_text(s, 5),
			 "updatedAt", db_col_text(s, 6));
}

/* ---- POST /pays --------------------------------------------------------- */

struct pay_create {
	struct pay_event ev;   /* payId filled in by the write */
	const char *status;    /* what a new row is: APPROVED (a charge) or VOIDED (a fence) */
	bool created;
	json_t *pay;           /* the payment row as JSON */
};

static int pay_create_fn(struct db *db, void *arg)
{
	static const char sql_find[] = "SELECT " PAY_COLS " FROM payments WHERE order_id = ?";
	static const char sql_insert[] = "INSERT INTO payments(order_id, customer_id, amount, status,"
					 " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)";
	struct pay_create *pc = arg;
	struct db_stmt *s = db_prepare(db, sql_find);
	char ts[32];
	json_t *data;
	int rc;

	if(!s)
		return HR_ERR_STORE;
	db_bind_int(s, 1, pc->ev.order_id);
	rc = db_step(s);
	if(rc == DB_ROW) {
		/* One payment per order: a repeat gets the existing one, if it is the same request. */
		if(strcmp(db_col_text(s, 2), pc->ev.customer_id) != 0 || db_col_int(s, 3) != pc->ev.amount)
			return HR_ERR_CONFLICT;
		pc->pay = pay_json(s);
		return pc->pay ? HR_OK : HR_ERR_NOMEM;
	}
	if(rc != DB_DONE)
		return rc;
	s = db_prepare(db, sql_insert);
	if(!s)
		return HR_ERR_STORE;
	hr_time_iso(hr_now_ms(), ts, sizeof(ts));
	db_bind_int(s, 1, pc->ev.order_id);
	db_bind_text(s, 2, pc->ev.customer_id);
	db_bind_int(s, 3, pc->ev.amount);
	db_bind_text(s, 4, pc->status);
	db_bind_text(s, 5, ts);
	db_bind_text(s, 6, ts);
	rc = db_step(s);
	if(rc != DB_DONE)
		return rc;
	pc->ev.pay_id = db_last_id(db);
	if(strcmp(pc->status, "APPROVED") == 0) {
		data = pay_event_data(&pc->ev);
		rc = data ? outbox_append(db, EV_PAY_APPROVED, data) : HR_ERR_NOMEM;
		json_decref(data);
		if(rc)
			return rc;
	}
	pc->created = true;
	pc->pay = json_pack("{s:I,s:I,s:s,s:I,s:s,s:s,s:s}", "payId", (json_int_t)pc->ev.pay_id,
			    "orderId", (json_int_t)pc->ev.order_id, "customerId", pc->ev.customer_id,
			    "amount", (json_int_t)pc->ev.amount, "status", pc->status,
			    "createdAt", ts, "updatedAt", ts);
	return pc->pay ? HR_OK : HR_ERR_NOMEM;
}

/* Asks mileage to accrue now. Whatever goes wrong, the answer is PENDING:
 * the PayApproved event already in the outbox will deliver the points. */
static json_t *accrue_now(struct payment *p, const struct pay_event *ev)
{
	struct dependency_result dr;
	json_t *body, *answer = NULL, *out;
	int status, rc;

	body = json_pack("{s:I,s:s,s:I}", "payId", (json_int_t)ev->pay_id, "customerId", ev->customer_id,
			 "amount", (json_int_t)ev->amount);
	/* Accrual is idempotent per payId: safe to repeat. */
	rc = dependency_post_json(p->mileage, "/mileages", body, true, &dr, &answer);
	status = dr.status;
	json_decref(body);
	if(rc == HR_OK && (status == 200 || status == 201) && json_is_object(answer)) {
		out = json_pack("{s:O,s:O}", "points", json_object_get(answer, "points"),
				"status", json_object_get(answer, "status"));
	} else if(rc == HR_OK && status == 409) {
		out = json_pack("{s:i,s:s}", "points", 0, "status", "CANCELLED");
	} else {
		log_event(LOG_WARN, "mileage accrual deferred to the PayApproved event",
			  json_pack("{s:I,s:i,s:s}", "payId", (json_int_t)ev->pay_id, "status", status,
				    "error", rc ? hr_err_name(rc) : "unexpected answer"));
		out = json_pack("{s:i,s:s}", "points", 0, "status", "PENDING");
	}
	json_decref(answer);
	dependency_result_release(&dr);
	return out;
}

/* Parses {"orderId","customerId","amount"} and writes a payment of status,
 * or finds the one the order already has. */
static void pays_write(struct request *req, struct response *res, struct payment *p, const char *status)
{
	struct pay_create pc = { .status = status };
	json_t *root;
	const struct field fields[] = {
		{ "orderId", FIELD_INT, true, 1, HR_MAX_ID, NULL, &pc.ev.order_id, NULL, NULL },
		{ "customerId", FIELD_STRING, true, 1, 64, check_customer_id, NULL, &pc.ev.customer_id, NULL },
		{ "amount", FIELD_INT, true, 1, HR_MAX_AMOUNT, NULL, &pc.ev.amount, NULL, NULL },
	};
	int rc;

	if(!api_body(req, res, fields, HR_ARRAY_LEN(fields), &root))
		return;
	rc = store_write(p->store, pay_create_fn, &pc);
	if(rc == HR_ERR_CONFLICT) {
		response_error(res, 409, "conflict", "order %lld already has a payment with another"
			       " customer or amount", (long long)pc.ev.order_id);
	} else if(rc) {
		api_store_error(res, rc);
	} else {
		const char *now = json_string_value(json_object_get(pc.pay, "status"));
		pc.ev.pay_id = json_integer_value(json_object_get(pc.pay, "payId"));
		json_object_set_new(pc.pay, "mileage", strcmp(now, "APPROVED") == 0 ? accrue_now(p, &pc.ev)
				    : strcmp(now, "CANCELLED") == 0
				    ? json_pack("{s:i,s:s}", "points", 0, "status", "CANCELLED") : json_null());
		response_json(res, pc.created ? 201 : 200, pc.pay);
		pc.pay = NULL;
	}
	json_decref(pc.pay);
	json_decref(root);
}

static void pays_create(struct request *req, struct response *res, void *ctx)
{
	pays_write(req, res, ctx, "APPROVED");
}

/* The order service gives up on an order whose payment outcome it could not
 * learn: if the order has a payment, that payment is the answer; if not, a
 * VOIDED row takes its orderId, so a request still on its way (delayed in a
 * socket buffer, a frozen process) can never charge it later. */
static void pays_void(struct request *req, struct response *res, void *ctx)
{
	pays_write(req, res, ctx, "VOIDED");
}

/* ---- reads -------------------------------------------------------------- */

struct pay_read {
	int64_t id;
	json_t *out;   /* the payment */
};

static int pay_get_fn(struct db *db, void *arg)
{
	static const char sql[] = "SELECT " PAY_COLS " FROM payments WHERE id = ?";
	struct pay_read *pr = arg;
	struct db_stmt *s = db_prepare(db, sql);
	int rc;

	if(!s)
		return HR_ERR_STORE;
	db_bind_int(s, 1, pr->id);
	rc = db_step(s);
	if(rc == DB_ROW)
		pr->out = pay_json(s);
	return rc == DB_ROW ? HR_OK : rc == DB_DONE ? HR_ERR_NOT_FOUND : rc;
}

static void pays_get(struct request *req, struct response *res, void *ctx)
{
	struct payment *p = ctx;
	struct pay_read pr = { 0 };
	int rc;

	if(!api_path_id(req, res, "payId", &pr.id))
		return;
	rc = store_read(p->store, pay_get_fn, &pr);
	if(rc == HR_ERR_NOT_FOUND)
		response_error(res, 404, "not_found", "no payment %lld", (long long)pr.id);
	else if(rc)
		api_store_error(res, rc);
	else
		response_json(res, 200, pr.out);
}

struct pay_list {
	int64_t order_id;
	struct api_page page;
};

static int pay_list_fn(struct db *db, void *arg)
{
	static const char sql[] = "SELECT " PAY_COLS " FROM payments WHERE order_id = ? AND id > ?"
				  " ORDER BY id LIMIT ?";
	struct pay_list *pl = arg;
	struct db_stmt *s = db_prepare(db, sql);

	if(!s)
		return HR_ERR_STORE;
	db_bind_int(s, 1, pl->order_id);
	db_bind_int(s, 2, pl->page.after);
	db_bind_int(s, 3, pl->page.limit + 1);
	return api_page_collect(s, &pl->page, pay_json);
}

static void pays_list(struct request *req, struct response *res, void *ctx)
{
	struct payment *p = ctx;
	struct pay_list pl = { 0 };

	if(api_query_id(req, res, "orderId", &pl.order_id) &&
	   api_list_params(req, res, &pl.page.after, &pl.page.limit))
		api_page_answer(res, p->store, pay_list_fn, &pl, &pl.page, "payId");
}

/* ---- POST /pays/{payId}/cancel ------------------------------------------ */

static int pay_cancel_fn(struct db *db, void *arg)
{
	static const char sql_find[] = "SELECT " PAY_COLS " FROM payments WHERE id = ?";
	static const char sql_cancel[] = "UPDATE payments SET status = 'CANCELLED', updated_at = ?"
					 " WHERE id = ? AND status = 'APPROVED'";
	struct pay_read *pr = arg;
	struct db_stmt *s = db_prepare(db, sql_find);
	struct pay_event ev;
	char ts[32];
	json_t *data;
	int rc;

	if(!s)
		return HR_ERR_STORE;
	db_bind_int(s, 1, pr->id);
	rc = db_step(s);
	if(rc != DB_ROW)
		return rc == DB_DONE ? HR_ERR_NOT_FOUND : rc;
	pr->out = pay_json(s);
	if(!pr->out)
		return HR_ERR_NOMEM;
	if(strcmp(db_col_text(s, 4), "CANCELLED") == 0)
		return HR_OK; /* repeating a cancel is harmless: no second event */
	if(strcmp(db_col_text(s, 4), "APPROVED") != 0)
		return HR_ERR_CONFLICT; /* VOIDED: nothing was charged, nothing to cancel */
	ev.pay_id = pr->id;
	ev.order_id = db_col_int(s, 1);
	ev.amount = db_col_int(s, 3);
	ev.customer_id = json_string_value(json_object_get(pr->out, "customerId"));
	hr_time_iso(hr_now_ms(), ts, sizeof(ts));
	s = db_prepare(db, sql_cancel);
	if(!s)
		return HR_ERR_STORE;
	db_bind_text(s, 1, ts);
	db_bind_int(s, 2, pr->id);
	rc = db_step(s);
	if(rc != DB_DONE)
		return rc;
	data = pay_event_data(&ev);
	rc = data ? outbox_append(db, EV_PAY_CANCELLED, data) : HR_ERR_NOMEM;
	json_decref(data);
	json_object_set_new(pr->out, "status", json_string("CANCELLED"));
	json_object_set_new(pr->out, "updatedAt", json_string(ts));
	return rc;
}

static void pays_cancel(struct request *req, struct response *res, void *ctx)
{
	struct payment *p = ctx;
	struct pay_read pr = { 0 };
	int rc;

	if(!api_path_id(req, res, "payId", &pr.id))
		return;
	rc = store_write(p->store, pay_cancel_fn, &pr);
	if(rc == HR_ERR_NOT_FOUND) {
		response_error(res, 404, "not_found", "no payment %lld", (long long)pr.id);
	} else if(rc == HR_ERR_CONFLICT) {
		response_error(res, 409, "conflict", "payment %lld was voided; there is nothing to cancel",
			       (long long)pr.id);
	} else if(rc) {
		api_store_error(res, rc);
	} else {
		response_json(res, 200, pr.out);
		pr.out = NULL;
	}
	json_decref(pr.out);
}

int pays_routes(struct server *srv, struct payment *p)
{
	return server_route(srv, "POST", "/pays", pays_create, p, 0) ||
	       server_route(srv, "POST", "/pays/void", pays_void, p, 0) ||
	       server_route(srv, "GET", "/pays", pays_list, p, 0) ||
	       server_route(srv, "GET", "/pays/{payId}", pays_get, p, 0) ||
	       server_route(srv, "POST", "/pays/{payId}/cancel", pays_cancel, p, 0) ? -1 : 0;
}

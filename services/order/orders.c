/*
 * orders.c - the orders resource.
 *
 * Placing an order is two writes around a call: the order is written PENDING,
 * payment is called, and the outcome is written (PAID or PAYMENT_FAILED). If
 * the outcome of the call is unknown (payment timed out after the request was
 * sent) the order stays PENDING: it was perhaps charged, so it must not be
 * marked failed. With an Idempotency-Key, the order row also holds the key,
 * a hash of the request, a lease while a request works on it, and the answer
 * once there is one: a retry replays the answer, or resumes a PENDING order
 * whose lease ran out (its worker died), calling payment again, which is
 * idempotent per orderId.
 */
#include "hearty.h"
#include "order.h"
#include "api.h"
#include "dependency.h"
#include "events.h"
#include "log.h"

#include <stdio.h>
#include <string.h>

#define IDEM_KEY_MAX 128

void order_from_row(struct order *o, struct db_stmt *s)
{
	o->id = db_col_int(s, 0);
	snprintf(o->customer_id, sizeof(o->customer_id), "%s", db_col_text(s, 1));
	snprintf(o->item, sizeof(o->item), "%s", db_col_text(s, 2));
	o->qty = db_col_int(s, 3);
	o->price = db_col_int(s, 4);
	o->amount = db_col_int(s, 5);
	snprintf(o->status, sizeof(o->status), "%s", db_col_text(s, 6));
	o->pay_id = db_col_null(s, 7) ? 0 : db_col_int(s, 7);
	o->points = db_col_int(s, 8);
	snprintf(o->mileage_status, sizeof(o->mileage_status), "%s", db_col_text(s, 9));
	snprintf(o->created_at, sizeof(o->created_at), "%s", db_col_text(s, 10));
	snprintf(o->updated_at, sizeof(o->updated_at), "%s", db_col_text(s, 11));
}

json_t *order_json(const struct order *o)
{
	json_t *j = json_pack("{s:I,s:s,s:s,s:I,s:I,s:I,s:s}", "orderId", (json_int_t)o->id,
			      "customerId", o->customer_id, "item", o->item, "qty", (json_int_t)o->qty,
			      "price", (json_int_t)o->price, "amount", (json_int_t)o->amount,
			      "status", o->status);
	if(!j)
		return NULL;
	json_object_set_new(j, "payId", o->pay_id ? json_integer(o->pay_id) : json_null());
	json_object_set_new(j, "mileage", o->mileage_status[0]
			    ? json_pack("{s:I,s:s}", "points", (json_int_t)o->points, "status", o->mileage_status)
			    : json_null());
	json_object_set_new(j, "createdAt", json_string(o->created_at));
	json_object_set_new(j, "updatedAt", json_string(o->updated_at));
	return j;
}

/* ---- placing an order: the first write ---------------------------------- */

enum place_outcome { PLACE_NEW, PLACE_RESUME, PLACE_REPLAY, PLACE_MISMATCH, PLACE_BUSY, PLACE_REFUSED };

struct placing {
	struct order_svc *svc;
	struct order o;
	const char *key;            /* Idempotency-Key, or NULL */
	char hash[24];              /* of the request's fields */
	int64_t lease_ms;
	int open_for_s;             /* payment's circuit is open this long: fail at once */
	enum place_outcome outcome;
	int replay_status;
	char *replay_body;          /* malloc'd */
};

/* FNV-1a over the fields that define the request: a retry must match them. */
static void request_hash(const struct order *o, char *out, size_t outlen)
{
	char text[600];
	uint64_t h = 1469598103934665603ULL;
	int n = snprintf(text, sizeof(text), "%s\n%s\n%lld\n%lld", o->customer_id, o->item,
			 (long long)o->qty, (long long)o->price);

	for(int i = 0; i < n && i < (int)sizeof(text); i++) {
		h ^= (unsigned char)text[i];
		h *= 1099511628211ULL;
	}
	snprintf(out, outlen, "%016llx", (unsigned long long)h);
}

/* Looks the key up. Returns HR_OK with pl->outcome set when the key is known,
 * HR_ERR_NOT_FOUND when it is new. */
static int place_lookup(struct db *db, struct placing *pl)
{
	static const char sql[] = "SELECT " ORDER_COLS ", idem_hash, lease_until, resp_status, resp_body"
				  " FROM orders WHERE idem_key = ?";
	static const char sql_lease[] = "UPDATE orders SET lease_until = ? WHERE id = ?";
	struct db_stmt *s = db_prepare(db, sql);
	int64_t now = hr_now_ms();
	int rc;

	if(!s)
		return HR_ERR_STORE;
	db_bind_text(s, 1, pl->key);
	rc = db_step(s);
	if(rc != DB_ROW)
		return rc == DB_DONE ? HR_ERR_NOT_FOUND : rc;
	order_from_row(&pl->o, s);
	if(strcmp(db_col_text(s, 12), pl->hash) != 0) {
		pl->outcome = PLACE_MISMATCH;
	} else if(!db_col_null(s, 14)) {
		pl->outcome = PLACE_REPLAY;
		pl->replay_status = (int)db_col_int(s, 14);
		pl->replay_body = strdup(db_col_text(s, 15));
		return pl->replay_body ? HR_OK : HR_ERR_NOMEM;
	} else if(db_col_int(s, 13) > now) {
		pl->outcome = PLACE_BUSY;
	} else {
		/* The request that held it is gone: this one takes the order over. */
		pl->outcome = PLACE_RESUME;
		s = db_prepare(db, sql_lease);
		if(!s)
			return HR_ERR_STORE;
		db_bind_int(s, 1, now + pl->lease_ms);
		db_bind_int(s, 2, pl->o.id);
		return db_step(s) == DB_DONE ? HR_OK : HR_ERR_STORE;
	}
	return HR_OK;
}

/* Stores the answer a keyed retry of a refused order replays. */
static int place_record_refusal(struct db *db, struct placing *pl)
{
	static const char sql[] = "UPDATE orders SET resp_status = ?, resp_body = ? WHERE id = ?";
	struct response answer = { 0 };
	struct db_stmt *s = db_prepare(db, sql);
	int rc;

	if(!s)
		return HR_ERR_STORE;
	order_failed_answer(&answer, pl->o.id, pl->open_for_s);
	db_bind_int(s, 1, answer.status);
	db_bind_text(s, 2, answer.body);
	db_bind_int(s, 3, pl->o.id);
	rc = db_step(s) == DB_DONE ? HR_OK : HR_ERR_STORE;
	response_release(&answer);
	return rc;
}

static int place_begin_fn(struct db *db, void *arg)
{
	static const char sql[] = "INSERT INTO orders(customer_id, item, qty, price, amount, status,"
				  " idem_key, idem_hash, lease_until, created_at, updated_at)"
				  " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
	struct placing *pl = arg;
	bool refused = pl->open_for_s > 0;
	struct db_stmt *s;
	int rc;

	if(pl->key) {
		rc = place_lookup(db, pl);
		if(rc != HR_ERR_NOT_FOUND)
			return rc;
	}
	s = db_prepare(db, sql);
	if(!s)
		return HR_ERR_STORE;
	hr_time_iso(hr_now_ms(), pl->o.created_at, sizeof(pl->o.created_at));
	memcpy(pl->o.updated_at, pl->o.created_at, sizeof(pl->o.updated_at));
	db_bind_text(s, 1, pl->o.customer_id);
	db_bind_text(s, 2, pl->o.item);
	db_bind_int(s, 3, pl->o.qty);
	db_bind_int(s, 4, pl->o.price);
	db_bind_int(s, 5, pl->o.amount);
	db_bind_text(s, 6, refused ? "PAYMENT_FAILED" : "PENDING");
	db_bind_text(s, 7, pl->key);
	db_bind_text(s, 8, pl->key ? pl->hash : NULL);
	/* Every PENDING order has a lease: once it runs out with the order still
	 * PENDING, the reconciler knows no request works on it any more. */
	if(!refused)
		db_bind_int(s, 9, hr_now_ms() + pl->lease_ms);
	db_bind_text(s, 10, pl->o.created_at);
	db_bind_text(s, 11, pl->o.updated_at);
	rc = db_step(s);
	if(rc != DB_DONE)
		return rc;
	pl->o.id = db_last_id(db);
	snprintf(pl->o.status, sizeof(pl->o.status), refused ? "PAYMENT_FAILED" : "PENDING");
	pl->outcome = refused ? PLACE_REFUSED : PLACE_NEW;
	return refused && pl->key ? place_record_refusal(db, pl) : HR_OK;
}

/* ---- placing an order: the payment call --------------------------------- */

enum pay_outcome { PAY_APPROVED, PAY_REFUSED, PAY_UNREACHABLE, PAY_UNKNOWN };

/* Reads payment's answer into o (pay id, mileage). */
static enum pay_outcome pay_answer(json_t *answer, struct order *o)
{
	json_t *mileage = json_object_get(answer, "mileage");
	const char *mstatus = json_string_value(json_object_get(mileage, "status"));
	int64_t pay_id, points = 0;

	if(!json_is_object(answer) || !validate_int_member(answer, "payId", 1, HR_MAX_ID, &pay_id) ||
	   !json_is_string(json_object_get(answer, "status")))
		return PAY_UNKNOWN;
	if(strcmp(json_string_value(json_object_get(answer, "status")), "APPROVED") != 0)
		return PAY_REFUSED;
	o->pay_id = pay_id;
	if(!mstatus || !validate_int_member(mileage, "points", 0, HR_MAX_AMOUNT, &points))
		mstatus = "PENDING";
	o->points = strcmp(mstatus, "SAVED") == 0 ? points : 0;
	snprintf(o->mileage_status, sizeof(o->mileage_status), "%s", mstatus);
	return PAY_APPROVED;
}

/* Calls payment. *retry_after_s says how long a refused caller should wait. */
static enum pay_outcome call_payment(struct order_svc *svc, struct order *o, int *retry_after_s)
{
	struct dependency_result dr;
	json_t *body, *answer = NULL;
	enum pay_outcome out;
	int rc;

	body = json_pack("{s:I,s:s,s:I}", "orderId", (json_int_t)o->id, "customerId", o->customer_id,
			 "amount", (json_int_t)o->amount);
	/* One payment per orderId: repeating the call never charges twice. */
	rc = dependency_post_json(svc->payment, "/pays", body, true, &dr, &answer);
	json_decref(body);
	if(rc == HR_OK && (dr.status == 200 || dr.status == 201))
		out = pay_answer(answer, o);
	else if(rc == HR_OK && dr.status >= 400 && dr.status < 500)
		out = PAY_REFUSED;
	else if(dr.maybe_delivered)
		out = PAY_UNKNOWN;            /* it may have been charged */
	else
		out = PAY_UNREACHABLE;        /* not sent, or refused (503) before any work */
	*retry_after_s = dr.retry_after_s > 0 ? dr.retry_after_s : 1;
	if(out != PAY_APPROVED)
		log_event(LOG_WARN, "payment call failed", json_pack("{s:I,s:i,s:s,s:i}", "orderId",
			  (json_int_t)o->id, "status", dr.status, "error", rc ? hr_err_name(rc) : "refused",
			  "attempts", dr.attempts));
	json_decref(answer);
	dependency_result_release(&dr);
	return out;
}

/* ---- placing an order: the second write --------------------------------- */

struct finishing {
	struct order *o;
	const char *key;
	int status;            /* the HTTP answer, stored for replays */
	const char *body;
	bool superseded;       /* the order had moved on: f->o now holds it as it is */
};

static int place_finish_fn(struct db *db, void *arg)
{
	static const char sql[] = "UPDATE orders SET status = ?, pay_id = ?, mileage_points = ?,"
				  " mileage_status = ?, lease_until = NULL, resp_status = ?, resp_body = ?,"
				  " updated_at = ? WHERE id = ? AND (status = 'PENDING'"
				  " OR (status = 'PAID' AND pay_id = ?))";
	static const char sql_get[] = "SELECT " ORDER_COLS " FROM orders WHERE id = ?";
	struct finishing *f = arg;
	struct db_stmt *s = db_prepare(db, sql);

	if(!s)
		return HR_ERR_STORE;
	db_bind_text(s, 1, f->o->status);
	if(f->o->pay_id)
		db_bind_int(s, 2, f->o->pay_id);
	if(f->o->mileage_status[0]) {
		db_bind_int(s, 3, f->o->points);
		db_bind_text(s, 4, f->o->mileage_status);
	}
	if(f->key) {
		db_bind_int(s, 5, f->status);
		db_bind_text(s, 6, f->body);
	}
	db_bind_text(s, 7, f->o->updated_at);
	db_bind_int(s, 8, f->o->id);
	if(f->o->pay_id)
		db_bind_int(s, 9, f->o->pay_id);
	if(db_step(s) != DB_DONE)
		return HR_ERR_STORE;
	if(db_changes(db) == 1)
		return HR_OK;
	/* The payment feed settled it first (and perhaps it was cancelled since). */
	s = db_prepare(db, sql_get);
	if(!s)
		return HR_ERR_STORE;
	db_bind_int(s, 1, f->o->id);
	if(db_step(s) != DB_ROW)
		return HR_ERR_STORE;
	order_from_row(f->o, s);
	f->superseded = true;
	return HR_OK;
}

/* Builds the answer for a settled order, records it with the order, answers. */
static void place_settle(struct placing *pl, enum pay_outcome po, int retry_after_s, struct response *res)
{
	struct response answer = { 0 };
	struct finishing f = { .o = &pl->o, .key = pl->key };
	int rc;

	hr_time_iso(hr_now_ms(), pl->o.updated_at, sizeof(pl->o.updated_at));
	if(po == PAY_APPROVED) {
		snprintf(pl->o.status, sizeof(pl->o.status), "PAID");
		response_json(&answer, 201, order_json(&pl->o));
	} else {
		snprintf(pl->o.status, sizeof(pl->o.status), "PAYMENT_FAILED");
		if(po == PAY_UNREACHABLE)
			order_failed_answer(&answer, pl->o.id, retry_after_s);
		else
			response_error(&answer, 502, "payment_rejected", "payment refused order %lld",
				       (long long)pl->o.id);
	}
	f.status = answer.status;
	f.body = answer.body;
	rc = store_write(pl->svc->store, place_finish_fn, &f);
	if(rc) {
		/* The payment stands; the order stays PENDING and a retry with the key resumes it. */
		response_unavailable(res, 1, "order %lld could not be recorded; retry with the same"
				     " Idempotency-Key", (long long)pl->o.id);
		response_release(&answer);
		return;
	}
	if(f.superseded) {
		response_release(&answer);
		response_json(res, 201, order_json(&pl->o));
		return;
	}
	*res = answer;
}

static void place_answer_known(struct placing *pl, struct response *res)
{
	switch(pl->outcome) {
	case PLACE_REPLAY:
		response_body(res, pl->replay_status, "application/json", pl->replay_body,
			      strlen(pl->replay_body));
		pl->replay_body = NULL;
		response_header(res, "Idempotent-Replayed", "true");
		if(pl->replay_status == 503)
			response_header(res, "Retry-After", "1");
		break;
	case PLACE_MISMATCH:
		response_error(res, 422, "idempotency_mismatch",
			       "Idempotency-Key was used for a different request");
		break;
	default:
		response_error(res, 409, "in_progress",
			       "a request with this Idempotency-Key is still in progress");
		break;
	}
}

static bool idem_key_valid(const char *key)
{
	size_t n = 0;
	for(; key[n]; n++)
		if(n >= IDEM_KEY_MAX || key[n] < 0x21 || key[n] > 0x7e)
			return false;
	return n > 0;
}

/* Validates the body into pl->o. */
static bool place_parse(struct request *req, struct response *res, struct placing *pl)
{
	const char *customer = NULL, *item = NULL;
	json_t *root;
	const struct field fields[] = {
		{ "customerId", FIELD_STRING, true, 1, 64, check_customer_id, NULL, &customer, NULL },
		{ "item", FIELD_STRING, true, 1, 100, check_printable, NULL, &item, NULL },
		{ "qty", FIELD_INT, true, 1, 1000, NULL, &pl->o.qty, NULL, NULL },
		{ "price", FIELD_INT, true, 1, 1000000000, NULL, &pl->o.price, NULL, NULL },
	};

	if(!api_body(req, res, fields, HR_ARRAY_LEN(fields), &root))
		return false;
	snprintf(pl->o.customer_id, sizeof(pl->o.customer_id), "%s", customer);
	snprintf(pl->o.item, sizeof(pl->o.item), "%s", item);
	json_decref(root);
	if(__builtin_mul_overflow(pl->o.qty, pl->o.price, &pl->o.amount) || pl->o.amount > HR_MAX_AMOUNT) {
		response_error(res, 400, "invalid_argument", "qty x price must not exceed %lld",
			       (long long)HR_MAX_AMOUNT);
		return false;
	}
	pl->key = request_header(req, "Idempotency-Key");
	if(pl->key && !idem_key_valid(pl->key)) {
		response_error(res, 400, "invalid_argument",
			       "Idempotency-Key must be 1 to 128 printable ASCII characters");
		return false;
	}
	request_hash(&pl->o, pl->hash, sizeof(pl->hash));
	return true;
}

static void orders_create(struct request *req, struct response *res, void *ctx)
{
	struct placing pl = { .svc = ctx };
	enum pay_outcome po;
	int rc, retry_after_s = 1;

	pl.lease_ms = pl.svc->lease_ms;
	if(!place_parse(req, res, &pl))
		return;
	/* Payment's circuit is open: the fallback needs no call, and one write. */
	pl.open_for_s = (int)((breaker_short_circuit_ms(dependency_breaker(pl.svc->payment)) + 999) / 1000);
	rc = store_write(pl.svc->store, place_begin_fn, &pl);
	if(rc) {
		api_store_error(res, rc);
	} else if(pl.outcome == PLACE_REFUSED) {
		order_failed_answer(res, pl.o.id, pl.open_for_s);
	} else if(pl.outcome != PLACE_NEW && pl.outcome != PLACE_RESUME) {
		place_answer_known(&pl, res);
	} else {
		po = call_payment(pl.svc, &pl.o, &retry_after_s);
		if(po == PAY_UNKNOWN)
			response_unavailable(res, 1, "payment for order %lld did not answer in time; its"
					     " outcome is not known yet and will be settled", (long long)pl.o.id);
		else
			place_settle(&pl, po, retry_after_s, res);
	}
	free(pl.replay_body);
}

/* ---- reads -------------------------------------------------------------- */

struct order_read {
	int64_t id;
	struct order o;
};

static int order_get_fn(struct db *db, void *arg)
{
	static const char sql[] = "SELECT " ORDER_COLS " FROM orders WHERE id = ?";
	struct order_read *r = arg;
	struct db_stmt *s = db_prepare(db, sql);
	int rc;

	if(!s)
		return HR_ERR_STORE;
	db_bind_int(s, 1, r->id);
	rc = db_step(s);
	if(rc == DB_ROW)
		order_from_row(&r->o, s);
	return rc == DB_ROW ? HR_OK : rc == DB_DONE ? HR_ERR_NOT_FOUND : rc;
}

/* Loads order id into r->o, or answers 404/503 and returns false. */
static bool order_load(struct order_svc *svc, struct order_read *r, struct response *res)
{
	int rc = store_read(svc->store, order_get_fn, r);

	if(rc == HR_ERR_NOT_FOUND)
		response_error(res, 404, "not_found", "no order %lld", (long long)r->id);
	else if(rc)
		api_store_error(res, rc);
	return rc == HR_OK;
}

static void orders_get(struct request *req, struct response *res, void *ctx)
{
	struct order_read r = { 0 };

	if(api_path_id(req, res, "orderId", &r.id) && order_load(ctx, &r, res))
		response_json(res, 200, order_json(&r.o));
}

static json_t *order_row_json(struct db_stmt *s)
{
	struct order o;

	order_from_row(&o, s);
	return order_json(&o);
}

struct order_list {
	char customer[72];
	struct api_page page;
};

static int order_list_fn(struct db *db, void *arg)
{
	static const char sql[] = "SELECT " ORDER_COLS " FROM orders WHERE customer_id = ? AND id > ?"
				  " ORDER BY id LIMIT ?";
	struct order_list *ol = arg;
	struct db_stmt *s = db_prepare(db, sql);

	if(!s)
		return HR_ERR_STORE;
	db_bind_text(s, 1, ol->customer);
	db_bind_int(s, 2, ol->page.after);
	db_bind_int(s, 3, ol->page.limit + 1);
	return api_page_collect(s, &ol->page, order_row_json);
}

static void orders_list(struct request *req, struct response *res, void *ctx)
{
	struct order_svc *svc = ctx;
	struct order_list ol = { 0 };

	if(api_query_customer(req, res, ol.customer, sizeof(ol.customer)) &&
	   api_list_params(req, res, &ol.page.after, &ol.page.limit))
		api_page_answer(res, svc->store, order_list_fn, &ol, &ol.page, "orderId");
}

/* ---- POST /orders/{orderId}/cancel -------------------------------------- */

static int order_cancel_fn(struct db *db, void *arg)
{
	static const char sql[] = "UPDATE orders SET status = 'CANCELLED', updated_at = ?"
				  " WHERE id = ? AND status = 'PAID'";
	struct order_read *r = arg;
	struct db_stmt *s = db_prepare(db, sql);
	char ts[32];

	if(!s)
		return HR_ERR_STORE;
	hr_time_iso(hr_now_ms(), ts, sizeof(ts));
	db_bind_text(s, 1, ts);
	db_bind_int(s, 2, r->id);
	if(db_step(s) != DB_DONE)
		return HR_ERR_STORE;
	return order_get_fn(db, r);
}

/* Cancels the payment. Returns true when payment confirmed it; otherwise answers. */
static bool cancel_payment(struct order_svc *svc, const struct order *o, struct response *res)
{
	struct client_call call = { 0 };
	struct dependency_result dr;
	char url[600];
	int rc;

	snprintf(url, sizeof(url), "%s/pays/%lld/cancel", dependency_url(svc->payment), (long long)o->pay_id);
	call.method = "POST";
	call.url = url;
	/* Cancelling twice is harmless: safe to repeat. */
	rc = dependency_call(svc->payment, &call, true, &dr);
	if(rc == HR_OK && dr.status == 200) {
		dependency_result_release(&dr);
		return true;
	}
	log_event(LOG_WARN, "payment cancel failed", json_pack("{s:I,s:i,s:s}", "orderId", (json_int_t)o->id,
		  "status", dr.status, "error", rc ? hr_err_name(rc) : "refused"));
	if(rc == HR_OK && dr.status >= 400 && dr.status < 500)
		response_error(res, 502, "payment_rejected", "payment refused to cancel payment %lld (%d)",
			       (long long)o->pay_id, dr.status);
	else if(dr.maybe_delivered)
		response_unavailable(res, dr.retry_after_s, "payment did not confirm the cancel of order %lld"
				     " in time; the order follows its payment once it does, or cancel it again"
				     " later", (long long)o->id);
	else
		response_unavailable(res, dr.retry_after_s, "payment is unavailable; order %lld is still"
				     " PAID, cancel it again later", (long long)o->id);
	dependency_result_release(&dr);
	return false;
}

static void orders_cancel(struct request *req, struct response *res, void *ctx)
{
	struct order_svc *svc = ctx;
	struct order_read r = { 0 };
	int rc;

	if(!api_path_id(req, res, "orderId", &r.id) || !order_load(svc, &r, res))
		return;
	if(strcmp(r.o.status, "CANCELLED") == 0) {
		response_json(res, 200, order_json(&r.o));
		return;
	}
	if(strcmp(r.o.status, "PAID") != 0) {
		response_error(res, 409, "conflict", "order %lld is %s; only a PAID order can be cancelled",
			       (long long)r.id, r.o.status);
		return;
	}
	if(!cancel_payment(svc, &r.o, res))
		return;
	rc = store_write(svc->store, order_cancel_fn, &r);
	if(rc)
		api_store_error(res, rc);
	else
		response_json(res, 200, order_json(&r.o));
}

int orders_routes(struct server *srv, struct order_svc *o)
{
	return server_route(srv, "POST", "/orders", orders_create, o, 0) ||
	       server_route(srv, "GET", "/orders", orders_list, o, 0) ||
	       server_route(srv, "GET", "/orders/{orderId}", orders_get, o, 0) ||
	       server_route(srv, "POST", "/orders/{orderId}/cancel", orders_cancel, o, 0) ? -1 : 0;
}

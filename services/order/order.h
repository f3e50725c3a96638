/* order.h - the order service's state, shared by its files. */
#ifndef HEARTY_ORDER_H
#define HEARTY_ORDER_H

#include <jansson.h>
#include "consumer.h"
#include "dependency.h"
#include "events.h"
#include "server.h"
#include "store.h"

struct reconciler;

struct order_svc {
	struct store *store;
	struct dependency *payment;    /* calls to payment: breaker, budget, retries */
	int64_t lease_ms;              /* how long a request may work on an order before
					* the order counts as abandoned (reconcile.c) */
	struct consumer *payments;     /* the payment feed, which settles what calls could not */
	struct dead_letters *dead;
	struct reconciler *reconciler;
};

#define ORDER_COLS "id, customer_id, item, qty, price, amount, status, pay_id, mileage_points," \
	" mileage_status, created_at, updated_at"

struct order {
	int64_t id, qty, price, amount, pay_id, points;
	char customer_id[72];
	char item[404];            /* 100 characters of up to 4 bytes */
	char status[24];
	char mileage_status[16];   /* "" when the payment did not get that far */
	char created_at[32], updated_at[32];
};

/* Reads a row selected with ORDER_COLS; the API's JSON of an order (new). */
void order_from_row(struct order *o, struct db_stmt *s);
json_t *order_json(const struct order *o);

/* Registers POST /orders, GET /orders, GET /orders/{orderId}, POST /orders/{orderId}/cancel. */
int orders_routes(struct server *srv, struct order_svc *o);
/* Applies a payment event: PayApproved settles a PENDING order as PAID (its
 * call's answer was lost, or order died waiting), PayCancelled marks a PAID
 * order CANCELLED (its cancel call's answer was lost, or the payment was
 * cancelled directly). */
int orders_on_payment_event(struct db *db, const struct event *ev, char *reason, size_t rlen, void *ctx);

/* Inside a write: brings a PENDING order to its payment's state (pay_status
 * APPROVED or CANCELLED), as the feed would. HR_ERR_REJECTED (with reason)
 * when the payment does not match the order. */
int order_settle_payment(struct db *db, const struct pay_event *pe, const char *pay_status,
			 char *reason, size_t rlen);
/* Inside a write: a PENDING order whose orderId payment voided is PAYMENT_FAILED. */
int order_settle_void(struct db *db, int64_t order_id);
/* The answer a retried POST /orders replays for an order that was not paid. */
void order_failed_answer(struct response *res, int64_t order_id, int retry_after_s);

/* Starts the thread that settles abandoned PENDING orders (RECONCILE_INTERVAL_MS). */
struct reconciler *reconciler_start(struct order_svc *svc, int interval_ms, char *err, size_t errlen);
void reconciler_stop(struct reconciler *r);

#endif

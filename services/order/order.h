/* order.h - the order service's state, shared by its files. */
#ifndef HEARTY_ORDER_H
#define HEARTY_ORDER_H

#include <jansson.h>
#include "consumer.h"
#include "server.h"
#include "store.h"

struct order_svc {
	struct store *store;
	char payment_url[512];         /* base URL of the payment service */
	long connect_timeout_ms;
	long payment_timeout_ms;       /* total time for one call to payment */
	struct consumer *payments;     /* the payment feed, which settles what calls could not */
	struct dead_letters *dead;
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

#endif

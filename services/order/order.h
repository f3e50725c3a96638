/* order.h - the order service's state, shared by its files. */
#ifndef HEARTY_ORDER_H
#define HEARTY_ORDER_H

#include "server.h"
#include "store.h"

struct order_svc {
	struct store *store;
	char payment_url[512];         /* base URL of the payment service */
	long connect_timeout_ms;
	long payment_timeout_ms;       /* total time for one call to payment */
};

/* Registers POST /orders, GET /orders, GET /orders/{orderId}, POST /orders/{orderId}/cancel. */
int orders_routes(struct server *srv, struct order_svc *o);

#endif

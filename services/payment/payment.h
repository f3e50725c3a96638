/* payment.h - the payment service's state, shared by its files. */
#ifndef HEARTY_PAYMENT_H
#define HEARTY_PAYMENT_H

#include "dependency.h"
#include "outbox.h"
#include "server.h"
#include "store.h"

struct payment {
	struct store *store;
	struct outbox_feed *feed;
	struct dependency *mileage;    /* the synchronous accrual: breaker, budget, retries */
};

/* Registers POST /pays, POST /pays/void, GET /pays, GET /pays/{payId},
 * POST /pays/{payId}/cancel. */
int pays_routes(struct server *srv, struct payment *p);

#endif

/* payment.h - the payment service's state, shared by its files. */
#ifndef HEARTY_PAYMENT_H
#define HEARTY_PAYMENT_H

#include "outbox.h"
#include "server.h"
#include "store.h"

struct payment {
	struct store *store;
	struct outbox_feed *feed;
	char mileage_url[512];         /* base URL of the mileage service */
	long connect_timeout_ms;
	long mileage_timeout_ms;       /* the synchronous accrual's total time */
};

/* Registers POST /pays, GET /pays, GET /pays/{payId}, POST /pays/{payId}/cancel. */
int pays_routes(struct server *srv, struct payment *p);

#endif

/* mileage.h - the mileage service's state, shared by its files. */
#ifndef HEARTY_MILEAGE_H
#define HEARTY_MILEAGE_H

#include "consumer.h"
#include "outbox.h"
#include "server.h"
#include "store.h"

struct mileage {
	struct store *store;
	struct outbox_feed *feed;
	struct consumer *payments;        /* consumes the payment feed */
	struct dead_letters *dead;
	int64_t rate_bp;                  /* points per 10,000 of amount */
};

/* Registers POST /mileages, GET /mileages, GET /mileages/{payId}. */
int mileages_routes(struct server *srv, struct mileage *m);
/* Applies a payment event (PayApproved, PayCancelled) to the ledger. */
int mileages_on_payment_event(struct db *db, const struct event *ev, char *reason, size_t rlen, void *ctx);

#endif

/* view.h - the mileage view's state, shared by its files. */
#ifndef HEARTY_VIEW_H
#define HEARTY_VIEW_H

#include "consumer.h"
#include "server.h"
#include "store.h"

struct view {
	struct store *store;
	struct consumer *feeds[2];        /* payment, mileage */
	struct dead_letters *dead;
};

/* Registers GET /mileageViews and GET /mileageViews/customers/{customerId}. */
int views_routes(struct server *srv, struct view *v);
/* Apply the payment feed's and the mileage feed's events to the read model. */
int views_on_payment_event(struct db *db, const struct event *ev, char *reason, size_t rlen, void *ctx);
int views_on_mileage_event(struct db *db, const struct event *ev, char *reason, size_t rlen, void *ctx);

#endif

/*
 * payment - payments and their outbox (PayApproved, PayCancelled).
 * Approving a payment calls mileage synchronously; if mileage is down the
 * payment still succeeds and the PayApproved event delivers the points later.
 */
#include "hearty.h"
#include "payment.h"
#include "config.h"
#include "service.h"

#include <stdlib.h>

static const char *const migrations[] = {
	"CREATE TABLE payments(id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" order_id INTEGER NOT NULL UNIQUE, customer_id TEXT NOT NULL, amount INTEGER NOT NULL,"
	" status TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);"
	OUTBOX_SCHEMA,
	/* status VOIDED: order gave up on this orderId (pays.c, pays_void); no event. */
	NULL,
};

static int payment_setup(struct service *svc, char *err, size_t errlen)
{
	struct payment *p = calloc(1, sizeof(*p));
	struct dependency_config dc;
	char mileage_url[512];

	if(!p)
		return -1;
	svc->state = p;
	p->store = svc->store;
	if(config_url("MILEAGE_URL", "http://127.0.0.1:8083", mileage_url, sizeof(mileage_url), err, errlen) ||
	   dependency_config_from_env("MILEAGE", 1000, &dc, err, errlen))
		return -1;
	p->mileage = dependency_new("mileage", mileage_url, &dc);
	if(!p->mileage)
		return -1;
	p->feed = outbox_feed_new(svc->store, svc->srv, "/payment");
	if(!p->feed || pays_routes(svc->srv, p))
		return -1;
	return 0;
}

static void payment_stop(struct service *svc)
{
	struct payment *p = svc->state;
	if(p)
		outbox_feed_stop(p->feed);
}

static void payment_release(struct service *svc)
{
	struct payment *p = svc->state;
	if(p) {
		outbox_feed_free(p->feed);
		dependency_free(p->mileage);
	}
	free(p);
}

int main(void)
{
	static const struct service_def def = {
		.name = "payment", .default_port = 8082, .db_file = "payment.db",
		.migrations = migrations, .setup = payment_setup, .stop = payment_stop,
		.release = payment_release,
	};
	return service_run(&def);
}

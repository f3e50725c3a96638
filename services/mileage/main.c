/*
 * mileage - the points ledger. Accrues synchronously when payment calls it,
 * and from the payment feed (PayApproved: accrue once; PayCancelled: remove
 * the points, or record the cancellation first so a late accrual is refused).
 * Emits MileageSaved and MileageCancelled.
 */
#include "hearty.h"
#include "mileage.h"
#include "config.h"
#include "service.h"

#include <stdlib.h>

static const char *const migrations[] = {
	"CREATE TABLE mileages(pay_id INTEGER PRIMARY KEY, customer_id TEXT NOT NULL,"
	" amount INTEGER NOT NULL, points INTEGER NOT NULL, status TEXT NOT NULL,"
	" created_at TEXT NOT NULL, updated_at TEXT NOT NULL);"
	"CREATE INDEX mileages_customer ON mileages(customer_id, pay_id);"
	OUTBOX_SCHEMA CONSUMER_SCHEMA,
	NULL,
};

static int mileage_setup(struct service *svc, char *err, size_t errlen)
{
	struct mileage *m = calloc(1, sizeof(*m));
	struct consumer_options co = { .feed = "payment", .metric_labels = "feed=\"payment\"" };
	char payment_url[512];

	if(!m)
		return -1;
	svc->state = m;
	m->store = svc->store;
	if(config_int("MILEAGE_RATE_BP", 100, 0, 10000, &m->rate_bp, err, errlen) ||
	   config_url("PAYMENT_URL", "http://127.0.0.1:8082", payment_url, sizeof(payment_url), err, errlen) ||
	   consumer_options_from_env(&co, err, errlen))
		return -1;
	m->feed = outbox_feed_new(svc->store, svc->srv, "/mileage");
	if(!m->feed || mileages_routes(svc->srv, m))
		return -1;
	co.base_url = payment_url;
	co.handler = mileages_on_payment_event;
	co.ctx = m;
	m->payments = consumer_start(svc->store, &co, err, errlen);
	if(!m->payments)
		return -1;
	m->dead = dead_letters_new(svc->srv, svc->store, &m->payments, 1);
	return m->dead ? 0 : -1;
}

static void mileage_stop(struct service *svc)
{
	struct mileage *m = svc->state;

	if(!m)
		return;
	outbox_feed_stop(m->feed);
	consumer_stop(m->payments);
	m->payments = NULL;
}

static void mileage_release(struct service *svc)
{
	struct mileage *m = svc->state;

	if(!m)
		return;
	dead_letters_free(m->dead);
	outbox_feed_free(m->feed);
	free(m);
}

int main(void)
{
	static const struct service_def def = {
		.name = "mileage", .default_port = 8083, .db_file = "mileage.db",
		.migrations = migrations, .setup = mileage_setup, .stop = mileage_stop,
		.release = mileage_release,
	};
	return service_run(&def);
}

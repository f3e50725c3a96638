/*
 * mileage-view - the CQRS read model: one row per payment and a balance per
 * customer, built only from the payment and mileage feeds. Deleting its
 * database and restarting it replays both feeds and rebuilds the same rows.
 */
#include "hearty.h"
#include "view.h"
#include "config.h"
#include "service.h"

#include <stdlib.h>

static const char *const migrations[] = {
	"CREATE TABLE mileage_views(pay_id INTEGER PRIMARY KEY, order_id INTEGER,"
	" customer_id TEXT NOT NULL, amount INTEGER, points INTEGER, pay_status TEXT,"
	" mileage_status TEXT, updated_at TEXT NOT NULL);"
	"CREATE INDEX mileage_views_customer ON mileage_views(customer_id, pay_id);"
	"CREATE TABLE customers(customer_id TEXT PRIMARY KEY, balance INTEGER NOT NULL,"
	" earned INTEGER NOT NULL, cancelled INTEGER NOT NULL, payments INTEGER NOT NULL);"
	CONSUMER_SCHEMA,
	NULL,
};

static int view_setup(struct service *svc, char *err, size_t errlen)
{
	struct view *v = calloc(1, sizeof(*v));
	struct consumer_options po = { .feed = "payment", .metric_labels = "feed=\"payment\"" };
	struct consumer_options mo = { .feed = "mileage", .metric_labels = "feed=\"mileage\"" };
	char payment_url[512], mileage_url[512];

	if(!v)
		return -1;
	svc->state = v;
	v->store = svc->store;
	if(config_url("PAYMENT_URL", "http://127.0.0.1:8082", payment_url, sizeof(payment_url), err, errlen) ||
	   config_url("MILEAGE_URL", "http://127.0.0.1:8083", mileage_url, sizeof(mileage_url), err, errlen) ||
	   consumer_options_from_env(&po, err, errlen) || consumer_options_from_env(&mo, err, errlen) ||
	   views_routes(svc->srv, v))
		return -1;
	po.base_url = payment_url;
	po.handler = views_on_payment_event;
	mo.base_url = mileage_url;
	mo.handler = views_on_mileage_event;
	v->feeds[0] = consumer_start(svc->store, &po, err, errlen);
	v->feeds[1] = v->feeds[0] ? consumer_start(svc->store, &mo, err, errlen) : NULL;
	if(!v->feeds[1])
		return -1;
	v->dead = dead_letters_new(svc->srv, svc->store, v->feeds, 2);
	return v->dead ? 0 : -1;
}

static void view_stop(struct service *svc)
{
	struct view *v = svc->state;

	if(!v)
		return;
	for(size_t i = 0; i < HR_ARRAY_LEN(v->feeds); i++) {
		consumer_stop(v->feeds[i]);
		v->feeds[i] = NULL;
	}
}

static void view_release(struct service *svc)
{
	struct view *v = svc->state;

	if(!v)
		return;
	dead_letters_free(v->dead);
	free(v);
}

int main(void)
{
	static const struct service_def def = {
		.name = "mileage-view", .default_port = 8084, .db_file = "view.db",
		.migrations = migrations, .setup = view_setup, .stop = view_stop,
		.release = view_release,
	};
	return service_run(&def);
}

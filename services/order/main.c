/*
 * order - orders. Placing one calls payment synchronously; cancelling one
 * cancels its payment synchronously. An Idempotency-Key makes a retried POST
 * return the first answer instead of placing a second order. The payment
 * feed settles what a lost answer left open (settle.c).
 */
#include "hearty.h"
#include "order.h"
#include "config.h"
#include "service.h"

#include <stdlib.h>

static const char *const migrations[] = {
	"CREATE TABLE orders(id INTEGER PRIMARY KEY AUTOINCREMENT, customer_id TEXT NOT NULL,"
	" item TEXT NOT NULL, qty INTEGER NOT NULL, price INTEGER NOT NULL, amount INTEGER NOT NULL,"
	" status TEXT NOT NULL, pay_id INTEGER, mileage_points INTEGER, mileage_status TEXT,"
	" idem_key TEXT UNIQUE, idem_hash TEXT, lease_until INTEGER, resp_status INTEGER,"
	" resp_body TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);"
	"CREATE INDEX orders_customer ON orders(customer_id, id);",
	CONSUMER_SCHEMA,
	NULL,
};

static int order_setup(struct service *svc, char *err, size_t errlen)
{
	struct order_svc *o = calloc(1, sizeof(*o));
	struct consumer_options co = { .feed = "payment", .metric_labels = "feed=\"payment\"" };
	struct dependency_config dc;
	char payment_url[512];
	int64_t interval;

	if(!o)
		return -1;
	svc->state = o;
	o->store = svc->store;
	if(config_url("PAYMENT_URL", "http://127.0.0.1:8082", payment_url, sizeof(payment_url), err, errlen) ||
	   dependency_config_from_env("PAYMENT", 3000, &dc, err, errlen) ||
	   config_int("RECONCILE_INTERVAL_MS", 1000, 10, 600000, &interval, err, errlen) ||
	   consumer_options_from_env(&co, err, errlen))
		return -1;
	/* A request holds its order for the whole payment call, and a little more. */
	o->lease_ms = dc.timeout_ms + 1000;
	o->payment = dependency_new("payment", payment_url, &dc);
	if(!o->payment || orders_routes(svc->srv, o))
		return -1;
	o->reconciler = reconciler_start(o, (int)interval, err, errlen);
	if(!o->reconciler)
		return -1;
	co.base_url = payment_url;
	co.handler = orders_on_payment_event;
	co.ctx = o;
	o->payments = consumer_start(svc->store, &co, err, errlen);
	if(!o->payments)
		return -1;
	o->dead = dead_letters_new(svc->srv, svc->store, &o->payments, 1);
	return o->dead ? 0 : -1;
}

static void order_stop(struct service *svc)
{
	struct order_svc *o = svc->state;

	if(!o)
		return;
	consumer_stop(o->payments);
	o->payments = NULL;
	reconciler_stop(o->reconciler);
	o->reconciler = NULL;
}

static void order_release(struct service *svc)
{
	struct order_svc *o = svc->state;

	if(o) {
		dead_letters_free(o->dead);
		dependency_free(o->payment);
	}
	free(o);
}

int main(void)
{
	static const struct service_def def = {
		.name = "order", .default_port = 8081, .db_file = "order.db",
		.migrations = migrations, .setup = order_setup, .stop = order_stop,
		.release = order_release,
	};
	return service_run(&def);
}

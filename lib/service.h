/*
 * service.h - the main() every service shares.
 *
 * service_run() reads the common settings, opens the store (creating or
 * migrating its schema), registers /healthz, /readyz and /metrics, lets the
 * service register its routes and start its consumers, listens, and waits for
 * SIGTERM or SIGINT. Then it drains: readiness turns 503, the listener
 * closes, requests in flight finish (up to SHUTDOWN_GRACE_MS), consumers stop,
 * and the store commits what is queued before it closes.
 */
#ifndef HEARTY_SERVICE_H
#define HEARTY_SERVICE_H

#include "server.h"
#include "store.h"

struct service {
	const char *name;
	struct server *srv;
	struct store *store;        /* NULL for a service without a database */
	void *state;                /* the service's own, set by setup */
};

struct service_def {
	const char *name;                    /* "order": logs, metrics, default DB file */
	int default_port;
	const char *db_file;                 /* default file under data/, NULL: no store */
	const char *const *migrations;
	/* Registers routes, reads the service's own settings, starts consumers.
	 * Returns 0, or -1 with err set (the service exits with status 2). */
	int (*setup)(struct service *svc, char *err, size_t errlen);
	/* Stops what setup started (consumers, feeds): called before the drain
	 * ends, so long polls return. May be NULL. */
	void (*stop)(struct service *svc);
	/* Frees svc->state after the server is gone. May be NULL. */
	void (*release)(struct service *svc);
};

/* Runs the service until a stop signal; returns the process exit status. */
int service_run(const struct service_def *def);

/* Logs a one-line configuration error and returns exit status 2. */
int service_config_error(const char *name, const char *err);

#endif

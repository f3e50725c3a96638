/* gateway.h - the gateway's routing table and forwarding. */
#ifndef HEARTY_GATEWAY_H
#define HEARTY_GATEWAY_H

#include "dependency.h"
#include "server.h"

#define GATEWAY_MAX_ROUTES 64

struct gateway_route {
	char prefix[128];          /* "/orders" */
	size_t prefix_len;
	char upstream[256];        /* "http://127.0.0.1:8081" */
	struct dependency *dep;    /* breaker, bulkhead and budget for this upstream */
};

struct gateway {
	struct gateway_route routes[GATEWAY_MAX_ROUTES];
	int nroutes;
};

/* Loads the routes file and gives each route its dependency (cfg). Returns 0,
 * or -1 with err naming the file and line. */
int routes_load(struct gateway *gw, const char *path, const struct dependency_config *cfg,
		char *err, size_t errlen);
void routes_free(struct gateway *gw);
/* The route for a path: longest prefix on a segment boundary; NULL if none. */
const struct gateway_route *routes_match(const struct gateway *gw, const char *path);

/* The handler that forwards every request the gateway does not answer itself. */
void gateway_forward(struct request *req, struct response *res, void *ctx);

#endif

/*
 * gateway - one entry point that routes by path prefix to the services, from
 * a routes file (a ConfigMap on Kubernetes). It passes method, path, query,
 * headers and body through unchanged, adds the request id, and answers 502 or
 * 504 in the JSON error shape when an upstream is down or too slow.
 */
#include "hearty.h"
#include "gateway.h"
#include "config.h"
#include "log.h"
#include "service.h"

#include <stdlib.h>

static int gateway_setup(struct service *svc, char *err, size_t errlen)
{
	struct gateway *gw = calloc(1, sizeof(*gw));
	struct dependency_config dc;
	const char *path = config_str("ROUTES_FILE", "deploy/routes.conf");

	if(!gw)
		return -1;
	svc->state = gw;
	if(dependency_config_from_env("UPSTREAM", 10000, &dc, err, errlen))
		return -1;
	/* An upstream's 503 is its own fallback (its breaker, its shedding): the
	 * gateway passes it on and does not open a circuit over it. */
	dc.ignore_503 = true;
	if(routes_load(gw, path, &dc, err, errlen))
		return -1;
	log_event(LOG_INFO, "routes loaded", json_pack("{s:s,s:i}", "file", path, "routes", gw->nroutes));
	/* After /healthz, /readyz and /metrics: everything else is forwarded. */
	return server_route(svc->srv, "*", "/", gateway_forward, gw, ROUTE_PREFIX | ROUTE_ANY_BODY);
}

static void gateway_release(struct service *svc)
{
	struct gateway *gw = svc->state;

	if(gw)
		routes_free(gw);
	free(gw);
}

int main(void)
{
	static const struct service_def def = {
		.name = "gateway", .default_port = 8088, .setup = gateway_setup,
		.release = gateway_release,
	};
	return service_run(&def);
}

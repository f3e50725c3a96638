/* service.c - shared start-up, probes and graceful shutdown. */
#include "hearty.h"
#include "service.h"
#include "client.h"
#include "config.h"
#include "log.h"
#include "metrics.h"

#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static void healthz(struct request *req, struct response *res, void *ctx)
{
	response_json(res, 200, json_pack("{s:s}", "status", "ok"));
}

static void readyz(struct request *req, struct response *res, void *ctx)
{
	struct service *svc = ctx;

	if(server_draining(svc->srv))
		response_unavailable(res, 1, "draining");
	else if(svc->store && !store_ping(svc->store))
		response_unavailable(res, 1, "the store does not answer");
	else
		response_json(res, 200, json_pack("{s:s}", "status", "ready"));
}

static void metrics_get(struct request *req, struct response *res, void *ctx)
{
	struct buf out;
	char *text;
	size_t len;

	buf_init(&out, 4 * 1024 * 1024);
	metrics_render(&out);
	text = buf_detach(&out, &len);
	response_body(res, 200, "text/plain; version=0.0.4", text, len);
}

int service_config_error(const char *name, const char *err)
{
	log_event(LOG_ERROR, "bad configuration", json_pack("{s:s}", "error", err));
	return 2;
}

/* Creates the folder that holds the database when it is missing (one level). */
static void make_parent_dir(const char *path)
{
	char copy[1024];
	snprintf(copy, sizeof(copy), "%s", path);
	if(mkdir(dirname(copy), 0755) && errno != EEXIST)
		log_event(LOG_WARN, "cannot create the data folder", json_pack("{s:s}", "path", path));
}

static int open_store(const struct service_def *def, struct service *svc, char *err, size_t errlen)
{
	char fallback[256];
	struct store_options so = { 0 };
	int64_t batch;

	if(!def->db_file)
		return 0;
	if(config_int("STORE_MAX_BATCH", 256, 1, 4096, &batch, err, errlen))
		return -1;
	snprintf(fallback, sizeof(fallback), "data/%s", def->db_file);
	so.path = config_str("DB_PATH", fallback);
	so.migrations = def->migrations;
	so.max_batch = (int)batch;
	so.busy_timeout_ms = 5000;
	so.max_readers = 32;
	make_parent_dir(so.path);
	return store_open(&svc->store, &so, err, errlen) ? -1 : 0;
}

static int setup_server(const struct service_def *def, struct service *svc, char *err, size_t errlen)
{
	struct server_options opt;

	if(server_options_from_env(&opt, def->default_port, err, errlen))
		return -1;
	svc->srv = server_new(&opt, err, errlen);
	if(!svc->srv)
		return -1;
	if(server_route(svc->srv, "GET", "/healthz", healthz, svc, ROUTE_INLINE) ||
	   server_route(svc->srv, "GET", "/readyz", readyz, svc, ROUTE_INLINE) ||
	   server_route(svc->srv, "GET", "/metrics", metrics_get, svc, ROUTE_INLINE)) {
		snprintf(err, errlen, "route table full");
		return -1;
	}
	return 0;
}

static void wait_for_stop_signal(void)
{
	sigset_t set;
	int sig = 0;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigwait(&set, &sig);
	log_event(LOG_INFO, "stopping", json_pack("{s:s}", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM"));
}

int service_run(const struct service_def *def)
{
	struct service svc = { .name = def->name };
	enum log_level level = LOG_INFO;
	char err[512] = "";
	int64_t started = hr_mono_us(), grace;
	sigset_t set;
	int status = 2;

	/* Block stop signals before any thread exists: only sigwait() sees them. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if(log_level_parse(config_str("LOG_LEVEL", "info"), &level)) {
		log_init(def->name, LOG_INFO);
		return service_config_error(def->name, "LOG_LEVEL must be debug, info, warn or error");
	}
	log_init(def->name, level);
	if(client_global_init() ||
	   config_int("SHUTDOWN_GRACE_MS", 5000, 0, 600000, &grace, err, sizeof(err)) ||
	   open_store(def, &svc, err, sizeof(err)) ||
	   setup_server(def, &svc, err, sizeof(err)) ||
	   def->setup(&svc, err, sizeof(err)) ||
	   server_start(svc.srv, err, sizeof(err))) {
		service_config_error(def->name, err[0] ? err : "start-up failed");
		goto out;
	}
	log_event(LOG_INFO, "ready", json_pack("{s:I}", "startUs", (json_int_t)(hr_mono_us() - started)));
	wait_for_stop_signal();
	if(def->stop)
		def->stop(&svc);
	server_drain(svc.srv, (int)grace);
	status = 0;
out:
	if(def->stop && status != 0)
		def->stop(&svc);
	server_free(svc.srv);
	if(def->release)
		def->release(&svc);
	store_close(svc.store);
	return status;
}

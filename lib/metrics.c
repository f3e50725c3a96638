/* metrics.c - a fixed registry of atomic counters plus collectors. */
#include "hearty.h"
#include "metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define METRICS_MAX    128
#define COLLECTORS_MAX 16

struct metric {
	const char *name;
	const char *labels;
	const char *help;
	const char *type;
	_Atomic int64_t value;
};

static struct metric registry[METRICS_MAX];
static size_t registry_len;
static struct {
	metrics_collector fn;
	void *ctx;
} collectors[COLLECTORS_MAX];
static size_t collectors_len;
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;

static struct metric *metrics_new(const char *name, const char *labels,
				  const char *help, const char *type)
{
	struct metric *m = NULL;

	pthread_mutex_lock(&registry_lock);
	for(size_t i = 0; i < registry_len; i++) {
		struct metric *r = &registry[i];
		if(strcmp(r->name, name) == 0 &&
		   (r->labels == labels || (r->labels && labels && strcmp(r->labels, labels) == 0))) {
			pthread_mutex_unlock(&registry_lock);
			return r;
		}
	}
	if(registry_len < METRICS_MAX) {
		m = &registry[registry_len++];
		m->name = name;
		m->labels = labels;
		m->help = help;
		m->type = type;
		atomic_store(&m->value, 0);
	}
	pthread_mutex_unlock(&registry_lock);
	return m;
}

struct metric *metrics_counter(const char *name, const char *labels, const char *help)
{
	return metrics_new(name, labels, help, "counter");
}

struct metric *metrics_gauge(const char *name, const char *labels, const char *help)
{
	return metrics_new(name, labels, help, "gauge");
}

void metric_add(struct metric *m, int64_t delta)
{
	if(m)
		atomic_fetch_add_explicit(&m->value, delta, memory_order_relaxed);
}

void metric_set(struct metric *m, int64_t value)
{
	if(m)
		atomic_store_explicit(&m->value, value, memory_order_relaxed);
}

int64_t metric_get(const struct metric *m)
{
	return m ? atomic_load_explicit(&((struct metric *)m)->value, memory_order_relaxed) : 0;
}

int metrics_add_collector(metrics_collector fn, void *ctx)
{
	int rc = -1;

	pthread_mutex_lock(&registry_lock);
	if(collectors_len < COLLECTORS_MAX) {
		collectors[collectors_len].fn = fn;
		collectors[collectors_len].ctx = ctx;
		collectors_len++;
		rc = 0;
	}
	pthread_mutex_unlock(&registry_lock);
	return rc;
}

void metrics_remove_collector(metrics_collector fn, void *ctx)
{
	pthread_mutex_lock(&registry_lock);
	for(size_t i = 0; i < collectors_len; i++) {
		if(collectors[i].fn == fn && collectors[i].ctx == ctx) {
			collectors[i] = collectors[--collectors_len];
			break;
		}
	}
	pthread_mutex_unlock(&registry_lock);
}

void metrics_render(struct buf *out)
{
	const char *last = "";

	pthread_mutex_lock(&registry_lock);
	for(size_t i = 0; i < registry_len; i++) {
		struct metric *m = &registry[i];
		/* HELP and TYPE once per family: series of a family register together. */
		if(strcmp(last, m->name) != 0)
			buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name, m->type);
		last = m->name;
		if(m->labels)
			buf_printf(out, "%s{%s} %lld\n", m->name, m->labels, (long long)metric_get(m));
		else
			buf_printf(out, "%s %lld\n", m->name, (long long)metric_get(m));
	}
	for(size_t i = 0; i < collectors_len; i++)
		collectors[i].fn(out, collectors[i].ctx);
	pthread_mutex_unlock(&registry_lock);
}

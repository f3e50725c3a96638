/*
 * metrics.h - Prometheus text exposition.
 *
 * Counters and gauges are plain atomics that hot paths bump without locks.
 * Modules with families of series (per route, per status) register a
 * collector that prints them when /metrics is scraped.
 */
#ifndef HEARTY_METRICS_H
#define HEARTY_METRICS_H

#include <stdint.h>
#include "buf.h"

struct metric;

/* Registers a counter or gauge named name with optional labels ("a=\"b\"" or
 * NULL) and help text; all strings must outlive the process (literals).
 * Registering the same name and labels again returns the same metric.
 * Returns the metric, or NULL when the registry is full. Thread-safe. */
struct metric *metrics_counter(const char *name, const char *labels, const char *help);
struct metric *metrics_gauge(const char *name, const char *labels, const char *help);

/* Adds delta (may be negative for gauges). NULL metric is a no-op. */
void metric_add(struct metric *m, int64_t delta);
void metric_set(struct metric *m, int64_t value);
int64_t metric_get(const struct metric *m);

/* A collector appends Prometheus lines for its own series to out. */
typedef void (*metrics_collector)(struct buf *out, void *ctx);
/* Returns 0, or -1 when the collector table is full. */
int metrics_add_collector(metrics_collector fn, void *ctx);
/* Removes a collector added with the same fn and ctx (before ctx is freed). */
void metrics_remove_collector(metrics_collector fn, void *ctx);

/* Renders every metric and collector into out. */
void metrics_render(struct buf *out);

#endif

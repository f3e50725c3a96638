/*
 * consumer.h - applies a producer's event feed to this service's store,
 * exactly once, and parks events it cannot apply.
 *
 * A consumer thread long-polls the producer's GET /events from the position
 * stored in its own database (feed_positions). Each batch is applied in one
 * store write together with the new position, so an effect and the position
 * that records it commit together: a crash replays nothing twice. The write
 * first checks that the stored position is still the one the batch was
 * fetched after; if another instance moved it, the batch is dropped and
 * fetched again, so two consumers sharing one database stay exactly-once.
 *
 * A handler answers HR_OK (applied), HR_ERR_REJECTED (permanently bad: the
 * event is parked in dead_letters with the reason and the feed moves on) or
 * anything else (transient: the batch is retried after a back-off, doubling
 * from FEED_RETRY_MIN_MS to FEED_RETRY_MAX_MS). Parked events are listed at
 * GET /deadLetters and re-driven with POST /deadLetters/{id}/retry.
 */
#ifndef HEARTY_CONSUMER_H
#define HEARTY_CONSUMER_H

#include <jansson.h>
#include "store.h"
#include "server.h"

/* Tables for consumers; put them in one of the consumer's migrations. */
#define CONSUMER_SCHEMA \
	"CREATE TABLE feed_positions(feed TEXT PRIMARY KEY, position INTEGER NOT NULL);" \
	"CREATE TABLE dead_letters(id INTEGER PRIMARY KEY AUTOINCREMENT, feed TEXT NOT NULL," \
	" position INTEGER NOT NULL, event TEXT NOT NULL, reason TEXT NOT NULL," \
	" status TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);"

/* One event as handed to a handler; everything borrowed for the call. */
struct event {
	int64_t position;
	const char *type;
	const char *time;      /* the event's time, "" when absent */
	json_t *data;          /* a JSON object */
};

/* Applies ev inside the caller's write. On HR_ERR_REJECTED, reason says why. */
typedef int (*event_handler)(struct db *db, const struct event *ev, char *reason,
			     size_t reasonlen, void *ctx);

struct consumer_options {
	const char *feed;          /* name in feed_positions: "payment" (literal) */
	const char *metric_labels; /* e.g. "feed=\"payment\"" (literal) */
	const char *base_url;      /* producer base URL; copied */
	event_handler handler;
	void *ctx;
	int batch;                 /* events per fetch and per transaction */
	int wait_ms;               /* long-poll wait asked of the producer */
	int linger_ms;             /* pause after a short batch, so events gather */
	int retry_min_ms, retry_max_ms;
	long connect_timeout_ms;
};

/* Fills batch, wait and retry settings from the environment (FEED_BATCH,
 * FEED_WAIT_MS, FEED_LINGER_MS, FEED_RETRY_MIN_MS, FEED_RETRY_MAX_MS,
 * CONNECT_TIMEOUT_MS). */
int consumer_options_from_env(struct consumer_options *opt, char *err, size_t errlen);

struct consumer;

/* Starts the consumer thread. NULL with err on failure. */
struct consumer *consumer_start(struct store *st, const struct consumer_options *opt,
				char *err, size_t errlen);
/* Stops the thread (an in-flight long poll is abandoned within about a
 * second) and frees the consumer. NULL is a no-op. */
void consumer_stop(struct consumer *c);
/* The last position applied (for tests and metrics). */
int64_t consumer_position(const struct consumer *c);

struct dead_letters;

/* Registers GET /deadLetters and POST /deadLetters/{id}/retry for the given
 * consumers (the array is borrowed and must outlive the server). Free the
 * result after the server is stopped. NULL when the route table is full. */
struct dead_letters *dead_letters_new(struct server *srv, struct store *st,
				      struct consumer *const *consumers, int n);
void dead_letters_free(struct dead_letters *dl);

#endif

/*
 * outbox.h - the transactional outbox and the event feed that serves it.
 *
 * A producer appends an event in the same store_write callback as the state
 * change that caused it, so both commit or neither does. On the embedded
 * default the outbox is served over HTTP as GET /events?after=&limit=&wait=,
 * a long-polling feed in position order; later the same table is relayed to
 * Kafka. Events are CloudEvents 1.0; the id is the position.
 */
#ifndef HEARTY_OUTBOX_H
#define HEARTY_OUTBOX_H

#include <jansson.h>
#include "store.h"
#include "server.h"

/* The outbox table; put it in one of the producer's migrations. */
#define OUTBOX_SCHEMA \
	"CREATE TABLE outbox(position INTEGER PRIMARY KEY AUTOINCREMENT," \
	" type TEXT NOT NULL, time TEXT NOT NULL, data TEXT NOT NULL);"

/* Appends an event of type with data (borrowed) inside the caller's write.
 * Returns HR_OK or HR_ERR_STORE/HR_ERR_NOMEM. */
int outbox_append(struct db *db, const char *type, json_t *data);

struct outbox_feed;

/* Creates the feed of st's outbox; source is the CloudEvents source
 * ("/payment"), a literal. Registers GET /events on srv. NULL on failure. */
struct outbox_feed *outbox_feed_new(struct store *st, struct server *srv, const char *source);
/* Wakes every long poll and makes new ones return at once (shutdown). */
void outbox_feed_stop(struct outbox_feed *f);
void outbox_feed_free(struct outbox_feed *f);

#endif

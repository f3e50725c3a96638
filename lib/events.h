/*
 * events.h - the event contract between services (DESIGN.md, Events).
 *
 * Producers build event data and consumers parse it here, so the shape of
 * every event is written down once. Parsing is a tolerant reader: unknown
 * members are ignored, known ones are checked strictly; a failure is
 * HR_ERR_REJECTED with a reason, which parks the event.
 */
#ifndef HEARTY_EVENTS_H
#define HEARTY_EVENTS_H

#include <jansson.h>
#include <stdint.h>

#define EV_PAY_APPROVED      "PayApproved"
#define EV_PAY_CANCELLED     "PayCancelled"
#define EV_MILEAGE_SAVED     "MileageSaved"
#define EV_MILEAGE_CANCELLED "MileageCancelled"

#define HR_MAX_AMOUNT 1000000000000LL   /* 10^12 KRW */

/* PayApproved, PayCancelled. */
struct pay_event {
	int64_t pay_id, order_id, amount;
	const char *customer_id;    /* borrowed from the parsed data */
};

/* MileageSaved, MileageCancelled. */
struct mileage_event {
	int64_t pay_id, points;
	const char *customer_id;
};

/* New data objects for the outbox; NULL if memory ran out. */
json_t *pay_event_data(const struct pay_event *ev);
json_t *mileage_event_data(const struct mileage_event *ev);

/* Parse data (borrowed); strings in *out stay valid while data lives.
 * Return HR_OK or HR_ERR_REJECTED with reason. */
int pay_event_parse(json_t *data, struct pay_event *out, char *reason, size_t rlen);
int mileage_event_parse(json_t *data, struct mileage_event *out, char *reason, size_t rlen);

#endif

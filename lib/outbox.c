/* outbox.c - outbox rows and the long-polling /events feed. */
#include "hearty.h"
#include "outbox.h"
#include "api.h"
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define FEED_WAIT_MAX_MS 30000
#define FEED_LIMIT_DEFAULT 100

struct outbox_feed {
	struct store *store;
	const char *source;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t commits;     /* bumped after every commit: long polls wait for a change */
	bool stopping;
};

int outbox_append(struct db *db, const char *type, json_t *data)
{
	static const char sql[] = "INSERT INTO outbox(type, time, data) VALUES (?, ?, ?)";
	struct db_stmt *s = db_prepare(db, sql);
	char ts[32];
	char *text;
	int rc;

	if(!s)
		return HR_ERR_STORE;
	text = json_dumps(data, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if(!text)
		return HR_ERR_NOMEM;
	hr_time_iso(hr_now_ms(), ts, sizeof(ts));
	db_bind_text(s, 1, type);
	db_bind_text(s, 2, ts);
	db_bind_text(s, 3, text);
	rc = db_step(s);
	free(text);
	return rc == DB_DONE ? HR_OK : HR_ERR_STORE;
}

static void feed_on_commit(void *arg)
{
	struct outbox_feed *f = arg;

	pthread_mutex_lock(&f->lock);
	f->commits++;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

struct feed_read {
	struct outbox_feed *feed;
	int64_t after, limit;
	json_t *items;
	int64_t next;
};

/* Builds one CloudEvent; data that is not JSON (a bad row) is served as a string. */
static json_t *feed_event(const char *source, int64_t pos, const char *type,
			  const char *time, const char *data)
{
	char id[24];
	json_t *d = json_loads(data, JSON_DECODE_ANY, NULL);

	if(!d)
		d = json_string(data);
	snprintf(id, sizeof(id), "%lld", (long long)pos);
	return json_pack("{s:I,s:{s:s,s:s,s:s,s:s,s:s,s:s,s:o}}", "position", (json_int_t)pos,
			 "event", "specversion", "1.0", "id", id, "source", source, "type", type,
			 "time", time, "datacontenttype", "application/json", "data", d);
}

static int feed_read_fn(struct db *db, void *arg)
{
	static const char sql[] = "SELECT position, type, time, data FROM outbox"
				  " WHERE position > ? ORDER BY position LIMIT ?";
	struct feed_read *fr = arg;
	struct db_stmt *s = db_prepare(db, sql);
	int rc;

	if(!s)
		return HR_ERR_STORE;
	db_bind_int(s, 1, fr->after);
	db_bind_int(s, 2, fr->limit);
	fr->next = fr->after;
	for(rc = db_step(s); rc == DB_ROW; rc = db_step(s)) {
		int64_t pos = db_col_int(s, 0);
		json_t *ev = feed_event(fr->feed->source, pos, db_col_text(s, 1), db_col_text(s, 2),
					db_col_text(s, 3));
		if(!ev || json_array_append_new(fr->items, ev))
			return HR_ERR_NOMEM;
		fr->next = pos;
	}
	return rc == DB_DONE ? HR_OK : rc;
}

/* Waits until a commit happens after `seen`, the deadline passes, or the feed stops. */
static void feed_wait(struct outbox_feed *f, uint64_t seen, int64_t deadline_us)
{
	pthread_mutex_lock(&f->lock);
	while(f->commits == seen && !f->stopping) {
		int64_t left = deadline_us - hr_mono_us();
		struct timespec ts;
		if(left <= 0)
			break;
		hr_deadline((left + 999) / 1000, &ts);
		pthread_cond_timedwait(&f->cond, &f->lock, &ts);
	}
	pthread_mutex_unlock(&f->lock);
}

static void feed_get(struct request *req, struct response *res, void *ctx)
{
	struct outbox_feed *f = ctx;
	struct feed_read fr = { .feed = f };
	int64_t wait_ms = 0, deadline;
	int rc;

	if(!api_query_int(req, res, "after", 0, HR_MAX_ID, 0, &fr.after) ||
	   !api_query_int(req, res, "limit", 1, HR_LIST_MAX, FEED_LIMIT_DEFAULT, &fr.limit) ||
	   !api_query_int(req, res, "wait", 0, FEED_WAIT_MAX_MS, 0, &wait_ms))
		return;
	deadline = hr_mono_us() + wait_ms * 1000;
	for(;;) {
		uint64_t seen;
		pthread_mutex_lock(&f->lock);
		seen = f->commits;
		pthread_mutex_unlock(&f->lock);
		fr.items = json_array();
		rc = fr.items ? store_read(f->store, feed_read_fn, &fr) : HR_ERR_NOMEM;
		if(rc || json_array_size(fr.items) > 0 || hr_mono_us() >= deadline || f->stopping)
			break;
		json_decref(fr.items);
		feed_wait(f, seen, deadline);
	}
	if(rc) {
		json_decref(fr.items);
		api_store_error(res, rc);
		return;
	}
	response_json(res, 200, json_pack("{s:o,s:I}", "items", fr.items, "next", (json_int_t)fr.next));
}

struct outbox_feed *outbox_feed_new(struct store *st, struct server *srv, const char *source)
{
	struct outbox_feed *f = calloc(1, sizeof(*f));

	if(!f)
		return NULL;
	f->store = st;
	f->source = source;
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	store_on_commit(st, feed_on_commit, f);
	if(server_route(srv, "GET", "/events", feed_get, f, 0)) {
		outbox_feed_free(f);
		return NULL;
	}
	return f;
}

void outbox_feed_stop(struct outbox_feed *f)
{
	if(!f)
		return;
	pthread_mutex_lock(&f->lock);
	f->stopping = true;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

void outbox_feed_free(struct outbox_feed *f)
{
	if(!f)
		return;
	pthread_mutex_destroy(&f->lock);
	pthread_cond_destroy(&f->cond);
	free(f);
}

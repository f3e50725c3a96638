/* consumer.c - exactly-once feed consumption with dead letters. */
#include "hearty.h"
#include "consumer.h"
#include "api.h"
#include "client.h"
#include "config.h"
#include "log.h"
#include "metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define FEED_RESPONSE_MAX (16 * 1024 * 1024)
#define REASON_MAX 256

struct consumer {
	struct store *store;
	struct consumer_options opt;
	char base_url[512];
	pthread_t thread;
	atomic_bool stopping;
	pthread_mutex_t lock;          /* for the stop wake-up during back-off */
	pthread_cond_t cond;
	_Atomic int64_t position;
	struct metric *m_applied, *m_parked, *m_position, *m_errors;
};

int consumer_options_from_env(struct consumer_options *opt, char *err, size_t errlen)
{
	int64_t batch, wait, rmin, rmax, conn, linger;

	if(config_int("FEED_BATCH", 100, 1, 500, &batch, err, errlen) ||
	   config_int("FEED_LINGER_MS", 20, 0, 1000, &linger, err, errlen) ||
	   config_int("FEED_WAIT_MS", 5000, 0, 30000, &wait, err, errlen) ||
	   config_int("FEED_RETRY_MIN_MS", 50, 1, 60000, &rmin, err, errlen) ||
	   config_int("FEED_RETRY_MAX_MS", 1000, 1, 600000, &rmax, err, errlen) ||
	   config_int("CONNECT_TIMEOUT_MS", 500, 1, 60000, &conn, err, errlen))
		return -1;
	if(rmax < rmin) {
		snprintf(err, errlen, "FEED_RETRY_MAX_MS must not be below FEED_RETRY_MIN_MS");
		return -1;
	}
	opt->batch = (int)batch;
	opt->linger_ms = (int)linger;
	opt->wait_ms = (int)wait;
	opt->retry_min_ms = (int)rmin;
	opt->retry_max_ms = (int)rmax;
	opt->connect_timeout_ms = conn;
	return 0;
}

/* ---- positions ---------------------------------------------------------- */

static const char sql_position[] = "SELECT position FROM feed_positions WHERE feed = ?";

static int read_position(struct db *db, const char *feed, int64_t *out)
{
	struct db_stmt *s = db_prepare(db, sql_position);
	int rc;

	if(!s)
		return HR_ERR_STORE;
	db_bind_text(s, 1, feed);
	rc = db_step(s);
	*out = rc == DB_ROW ? db_col_int(s, 0) : 0;
	return rc == DB_ROW || rc == DB_DONE ? HR_OK : rc;
}

struct position_arg {
	const char *feed;
	int64_t position;
};

static int load_position_fn(struct db *db, void *arg)
{
	struct position_arg *pa = arg;
	return read_position(db, pa->feed, &pa->position);
}

/* ---- applying events ---------------------------------------------------- */

/* Checks an item's envelope and fills ev. Returns HR_OK, HR_ERR_REJECTED with
 * reason (a bad event: park it), or HR_ERR_UPSTREAM (a broken feed: retry). */
static int event_from_item(json_t *item, int64_t after, struct event *ev, char *reason, size_t rlen)
{
	json_t *ce = json_object_get(item, "event");
	json_t *type, *time;

	if(!validate_int_member(item, "position", after + 1, HR_MAX_ID, &ev->position))
		return HR_ERR_UPSTREAM;
	type = json_object_get(ce, "type");
	time = json_object_get(ce, "time");
	ev->data = json_object_get(ce, "data");
	ev->type = json_is_string(type) ? json_string_value(type) : "";
	ev->time = json_is_string(time) ? json_string_value(time) : "";
	if(!json_is_object(ce) || !json_is_string(type)) {
		snprintf(reason, rlen, "not a CloudEvent: event.type missing");
		return HR_ERR_REJECTED;
	}
	if(!json_is_object(ev->data)) {
		snprintf(reason, rlen, "event data is not a JSON object");
		return HR_ERR_REJECTED;
	}
	return HR_OK;
}

static int park(struct db *db, const char *feed, int64_t position, json_t *ce, const char *reason)
{
	static const char sql[] = "INSERT INTO dead_letters(feed, position, event, reason, status,"
				  " created_at, updated_at) VALUES (?, ?, ?, ?, 'PARKED', ?, ?)";
	struct db_stmt *s = db_prepare(db, sql);
	char ts[32];
	char *text;
	int rc;

	if(!s)
		return HR_ERR_STORE;
	text = ce ? json_dumps(ce, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY) : NULL;
	hr_time_iso(hr_now_ms(), ts, sizeof(ts));
	db_bind_text(s, 1, feed);
	db_bind_int(s, 2, position);
	db_bind_text(s, 3, text ? text : "null");
	db_bind_text(s, 4, reason);
	db_bind_text(s, 5, ts);
	db_bind_text(s, 6, ts);
	rc = db_step(s);
	free(text);
	return rc == DB_DONE ? HR_OK : HR_ERR_STORE;
}

/* Runs the handler in its own savepoint so a rejected event leaves no trace but its dead letter. */
static int apply_one(struct db *db, event_handler fn, void *ctx, const struct event *ev,
		     char *reason, size_t rlen)
{
	int rc;

	if(db_run(db, "SAVEPOINT event"))
		return HR_ERR_STORE;
	rc = fn(db, ev, reason, rlen, ctx);
	if(rc != HR_OK) {
		db_release(db);
		db_run(db, "ROLLBACK TO event");
	}
	db_run(db, "RELEASE event");
	return rc;
}

struct batch_arg {
	struct consumer *c;
	json_t *items;
	int64_t after;       /* position the batch was fetched after */
	int64_t last;        /* out: position reached */
	bool moved;          /* out: another instance had moved the position */
	int applied, parked;
};

static int apply_batch_fn(struct db *db, void *arg)
{
	static const char sql_save[] = "INSERT INTO feed_positions(feed, position) VALUES (?, ?)"
				       " ON CONFLICT(feed) DO UPDATE SET position = excluded.position";
	struct batch_arg *ba = arg;
	struct consumer *c = ba->c;
	struct db_stmt *s;
	int64_t stored;
	size_t i;
	json_t *item;
	int rc = read_position(db, c->opt.feed, &stored);

	if(rc)
		return rc;
	if(stored != ba->after) {
		ba->moved = true; /* another instance applied these already */
		return HR_ERR_CONFLICT;
	}
	ba->last = ba->after;
	json_array_foreach(ba->items, i, item) {
		char reason[REASON_MAX] = "";
		struct event ev = { 0 };
		rc = event_from_item(item, ba->last, &ev, reason, sizeof(reason));
		if(rc == HR_OK)
			rc = apply_one(db, c->opt.handler, c->opt.ctx, &ev, reason, sizeof(reason));
		if(rc == HR_ERR_REJECTED) {
			rc = park(db, c->opt.feed, ev.position, json_object_get(item, "event"), reason);
			ba->parked++;
			log_event(LOG_WARN, "event parked", json_pack("{s:s,s:I,s:s}", "feed", c->opt.feed,
				  "position", (json_int_t)ev.position, "reason", reason));
		} else if(rc == HR_OK) {
			ba->applied++;
		}
		if(rc)
			return rc;
		ba->last = ev.position;
	}
	s = db_prepare(db, sql_save);
	if(!s)
		return HR_ERR_STORE;
	db_bind_text(s, 1, c->opt.feed);
	db_bind_int(s, 2, ba->last);
	return db_step(s) == DB_DONE ? HR_OK : HR_ERR_STORE;
}

/* ---- the loop ----------------------------------------------------------- */

/* Sleeps ms unless the consumer is stopped first. */
static void consumer_sleep(struct consumer *c, int ms)
{
	struct timespec ts;

	hr_deadline(ms, &ts);
	pthread_mutex_lock(&c->lock);
	if(!atomic_load(&c->stopping))
		pthread_cond_timedwait(&c->cond, &c->lock, &ts);
	pthread_mutex_unlock(&c->lock);
}

/* Fetches the next batch after pos. Returns HR_OK with *items (new reference). */
static int fetch(struct consumer *c, int64_t pos, json_t **items)
{
	struct client_call call = { 0 };
	struct client_result res;
	char url[640];
	json_t *root;
	int rc;

	*items = NULL;
	snprintf(url, sizeof(url), "%s/events?after=%lld&limit=%d&wait=%d", c->base_url,
		 (long long)pos, c->opt.batch, c->opt.wait_ms);
	call.method = "GET";
	call.url = url;
	call.connect_timeout_ms = c->opt.connect_timeout_ms;
	call.timeout_ms = c->opt.wait_ms + 10000L;
	call.max_response = FEED_RESPONSE_MAX;
	call.cancel = &c->stopping;
	rc = client_call(&call, &res);
	if(rc == HR_OK && res.status != 200) {
		snprintf(res.error, sizeof(res.error), "feed answered %d", res.status);
		rc = HR_ERR_UPSTREAM;
	}
	if(rc == HR_OK) {
		root = json_loadb(res.body.data ? res.body.data : "", res.body.len, 0, NULL);
		*items = json_incref(json_object_get(root, "items"));
		json_decref(root);
		if(!json_is_array(*items)) {
			json_decref(*items);
			*items = NULL;
			snprintf(res.error, sizeof(res.error), "feed answer has no items array");
			rc = HR_ERR_UPSTREAM;
		}
	}
	if(rc && rc != HR_ERR_STOPPED)
		log_event(LOG_WARN, "feed fetch failed", json_pack("{s:s,s:s,s:s}", "feed", c->opt.feed,
			  "url", c->base_url, "error", res.error));
	client_result_release(&res);
	return rc;
}

/* One fetch-and-apply round. Returns HR_OK when the round made progress or
 * found nothing new, an error when it should back off. */
static int consumer_round(struct consumer *c)
{
	struct batch_arg ba = { .c = c };
	struct position_arg pa = { .feed = c->opt.feed };
	int rc;

	ba.after = atomic_load(&c->position);
	rc = fetch(c, ba.after, &ba.items);
	if(rc)
		return rc;
	if(json_array_size(ba.items) == 0) {
		json_decref(ba.items);
		return HR_OK;
	}
	rc = store_write(c->store, apply_batch_fn, &ba);
	if(rc == HR_OK) {
		atomic_store(&c->position, ba.last);
		metric_set(c->m_position, ba.last);
		metric_add(c->m_applied, ba.applied);
		metric_add(c->m_parked, ba.parked);
		/* A short batch under load: let events gather so the next round
		 * applies many in one transaction instead of one fsync each. */
		if(c->opt.linger_ms && json_array_size(ba.items) < (size_t)c->opt.batch)
			consumer_sleep(c, c->opt.linger_ms);
		json_decref(ba.items);
		return HR_OK;
	}
	json_decref(ba.items);
	if(ba.moved && store_read(c->store, load_position_fn, &pa) == HR_OK) {
		/* Someone else moved the position: continue from theirs. */
		atomic_store(&c->position, pa.position);
		return HR_OK;
	}
	log_event(LOG_WARN, "applying a batch failed; will retry", json_pack("{s:s,s:I,s:s}",
		  "feed", c->opt.feed, "after", (json_int_t)ba.after, "error", hr_err_name(rc)));
	return rc;
}

static void *consumer_main(void *arg)
{
	struct consumer *c = arg;
	int backoff = c->opt.retry_min_ms;

	while(!atomic_load(&c->stopping)) {
		int rc = consumer_round(c);
		if(rc == HR_OK) {
			backoff = c->opt.retry_min_ms;
			continue;
		}
		if(rc == HR_ERR_STOPPED)
			break;
		metric_add(c->m_errors, 1);
		consumer_sleep(c, backoff);
		backoff = backoff * 2 > c->opt.retry_max_ms ? c->opt.retry_max_ms : backoff * 2;
	}
	return NULL;
}

struct consumer *consumer_start(struct store *st, const struct consumer_options *opt,
				char *err, size_t errlen)
{
	struct consumer *c = calloc(1, sizeof(*c));
	struct position_arg pa = { .feed = opt->feed };

	if(!c || strlen(opt->base_url) >= sizeof(c->base_url)) {
		snprintf(err, errlen, "cannot create the %s consumer", opt->feed);
		free(c);
		return NULL;
	}
	c->store = st;
	c->opt = *opt;
	snprintf(c->base_url, sizeof(c->base_url), "%s", opt->base_url);
	c->opt.base_url = c->base_url;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	if(store_read(st, load_position_fn, &pa)) {
		snprintf(err, errlen, "cannot read the %s feed position", opt->feed);
		goto fail;
	}
	atomic_store(&c->position, pa.position);
	c->m_applied = metrics_counter("feed_events_applied_total", opt->metric_labels,
				       "Events applied, by feed.");
	c->m_parked = metrics_counter("feed_events_parked_total", opt->metric_labels,
				      "Events parked as dead letters, by feed.");
	c->m_position = metrics_gauge("feed_position", opt->metric_labels,
				      "Last feed position applied, by feed.");
	c->m_errors = metrics_counter("feed_errors_total", opt->metric_labels,
				      "Failed fetch or apply rounds (each followed by a back-off), by feed.");
	metric_set(c->m_position, pa.position);
	if(pthread_create(&c->thread, NULL, consumer_main, c)) {
		snprintf(err, errlen, "cannot start the %s consumer thread", opt->feed);
		goto fail;
	}
	return c;
fail:
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	free(c);
	return NULL;
}

void consumer_stop(struct consumer *c)
{
	if(!c)
		return;
	pthread_mutex_lock(&c->lock);
	atomic_store(&c->stopping, true);
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->thread, NULL);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	free(c);
}

int64_t consumer_position(const struct consumer *c)
{
	return atomic_load(&((struct consumer *)c)->position);
}

/* ---- dead letters ------------------------------------------------------- */

struct dead_letters {
	struct store *store;
	struct consumer *const *consumers;
	int n;
};

static json_t *dead_letter_json(struct db_stmt *s)
{
	json_t *ev = json_loads(db_col_text(s, 3), JSON_DECODE_ANY, NULL);
	json_t *o = json_pack("{s:I,s:s,s:I,s:o,s:s,s:s,s:s,s:s}",
			      "id", (json_int_t)db_col_int(s, 0), "feed", db_col_text(s, 1),
			      "position", (json_int_t)db_col_int(s, 2), "type", json_null(),
			      "reason", db_col_text(s, 4), "status", db_col_text(s, 5),
			      "createdAt", db_col_text(s, 6), "updatedAt", db_col_text(s, 7));
	if(!o) {
		json_decref(ev);
		return NULL;
	}
	if(json_is_string(json_object_get(ev, "type")))
		json_object_set(o, "type", json_object_get(ev, "type"));
	json_object_set_new(o, "event", ev ? ev : json_string(db_col_text(s, 3)));
	return o;
}

static int dl_list_fn(struct db *db, void *arg)
{
	static const char sql[] = "SELECT id, feed, position, event, reason, status, created_at,"
				  " updated_at FROM dead_letters WHERE id > ? ORDER BY id LIMIT ?";
	struct api_page *page = arg;
	struct db_stmt *s = db_prepare(db, sql);

	if(!s)
		return HR_ERR_STORE;
	db_bind_int(s, 1, page->after);
	db_bind_int(s, 2, page->limit + 1);
	return api_page_collect(s, page, dead_letter_json);
}

static void dl_list(struct request *req, struct response *res, void *ctx)
{
	struct dead_letters *dc = ctx;
	struct api_page page = { 0 };

	if(api_list_params(req, res, &page.after, &page.limit))
		api_page_answer(res, dc->store, dl_list_fn, &page, &page, "id");
}

struct dl_retry {
	struct dead_letters *dc;
	int64_t id;
	json_t *new_data;     /* borrowed; NULL keeps the stored data */
	int outcome;          /* HR_OK applied, HR_ERR_REJECTED, HR_ERR_CONFLICT, HR_ERR_NOT_FOUND */
	char reason[REASON_MAX];
	json_t *row;          /* the dead letter after the attempt */
};

static struct consumer *consumer_for(struct dead_letters *dc, const char *feed)
{
	for(int i = 0; i < dc->n; i++)
		if(strcmp(dc->consumers[i]->opt.feed, feed) == 0)
			return dc->consumers[i];
	return NULL;
}

static int dl_update(struct db *db, int64_t id, const char *status, const char *event, const char *reason)
{
	static const char sql[] = "UPDATE dead_letters SET status = ?, event = COALESCE(?, event),"
				  " reason = ?, updated_at = ? WHERE id = ?";
	struct db_stmt *s = db_prepare(db, sql);
	char ts[32];

	if(!s)
		return HR_ERR_STORE;
	hr_time_iso(hr_now_ms(), ts, sizeof(ts));
	db_bind_text(s, 1, status);
	db_bind_text(s, 2, event);
	db_bind_text(s, 3, reason);
	db_bind_text(s, 4, ts);
	db_bind_int(s, 5, id);
	return db_step(s) == DB_DONE ? HR_OK : HR_ERR_STORE;
}

/* Re-applies one parked event; the dead letter records the outcome in the same write. */
static int dl_retry_attempt(struct db *db, struct dl_retry *r, struct db_stmt *s)
{
	struct consumer *c = consumer_for(r->dc, db_col_text(s, 1));
	json_t *ce = json_loads(db_col_text(s, 3), 0, NULL);
	char reason[REASON_MAX] = "";
	char *text = NULL;
	struct event ev = { .position = db_col_int(s, 2) };
	int rc;

	if(!json_is_object(ce))
		ce = json_pack("{s:n}", "type");
	if(r->new_data)
		json_object_set(ce, "data", r->new_data);
	db_release(db);
	if(!c) {
		snprintf(reason, sizeof(reason), "no consumer for this feed");
		rc = HR_ERR_REJECTED;
	} else {
		json_t *item = json_pack("{s:I,s:O}", "position", (json_int_t)ev.position, "event", ce);
		rc = event_from_item(item, ev.position - 1, &ev, reason, sizeof(reason));
		if(rc == HR_OK)
			rc = apply_one(db, c->opt.handler, c->opt.ctx, &ev, reason, sizeof(reason));
		else if(rc != HR_ERR_REJECTED)
			rc = HR_ERR_REJECTED;
		json_decref(item);
	}
	text = json_dumps(ce, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(ce);
	if(rc == HR_OK) {
		rc = dl_update(db, r->id, "REDRIVEN", text, "re-driven");
		r->outcome = HR_OK;
	} else if(rc == HR_ERR_REJECTED) {
		snprintf(r->reason, sizeof(r->reason), "%s", reason);
		rc = dl_update(db, r->id, "PARKED", r->new_data ? text : NULL, reason);
		r->outcome = HR_ERR_REJECTED;
	}
	free(text);
	return rc;
}

static int dl_retry_fn(struct db *db, void *arg)
{
	static const char sql[] = "SELECT id, feed, position, event, reason, status, created_at,"
				  " updated_at FROM dead_letters WHERE id = ?";
	struct dl_retry *r = arg;
	struct db_stmt *s = db_prepare(db, sql);
	int rc;

	if(!s)
		return HR_ERR_STORE;
	db_bind_int(s, 1, r->id);
	rc = db_step(s);
	if(rc == DB_DONE) {
		r->outcome = HR_ERR_NOT_FOUND;
		return HR_OK;
	}
	if(rc != DB_ROW)
		return rc;
	if(strcmp(db_col_text(s, 5), "PARKED") != 0) {
		r->outcome = HR_ERR_CONFLICT;
		return HR_OK;
	}
	rc = dl_retry_attempt(db, r, s);
	if(rc)
		return rc;
	s = db_prepare(db, sql);
	if(!s)
		return HR_ERR_STORE;
	db_bind_int(s, 1, r->id);
	if(db_step(s) == DB_ROW)
		r->row = dead_letter_json(s);
	return HR_OK;
}

static void dl_retry(struct request *req, struct response *res, void *ctx)
{
	json_t *root = NULL;
	struct dl_retry r = { .dc = ctx };
	const struct field fields[] = {
		{ .name = "data", .type = FIELD_OBJECT, .obj_out = &r.new_data },
	};
	size_t len;
	int rc;

	if(!api_path_id(req, res, "id", &r.id))
		return;
	request_body(req, &len);
	if(len && !api_body(req, res, fields, HR_ARRAY_LEN(fields), &root))
		return;
	rc = store_write(r.dc->store, dl_retry_fn, &r);
	json_decref(root);
	if(rc) {
		json_decref(r.row);
		api_store_error(res, rc);
		return;
	}
	switch(r.outcome) {
	case HR_OK:
		response_json(res, 200, r.row);
		return;
	case HR_ERR_NOT_FOUND:
		response_error(res, 404, "not_found", "no dead letter %lld", (long long)r.id);
		break;
	case HR_ERR_CONFLICT:
		response_error(res, 409, "conflict", "dead letter %lld was already re-driven", (long long)r.id);
		break;
	default:
		response_error(res, 422, "event_rejected", "the event was rejected again: %s", r.reason);
		break;
	}
	json_decref(r.row);
}

struct dead_letters *dead_letters_new(struct server *srv, struct store *st,
				      struct consumer *const *consumers, int n)
{
	struct dead_letters *dc = calloc(1, sizeof(*dc));

	if(!dc)
		return NULL;
	dc->store = st;
	dc->consumers = consumers;
	dc->n = n;
	if(server_route(srv, "GET", "/deadLetters", dl_list, dc, 0) ||
	   server_route(srv, "POST", "/deadLetters/{id}/retry", dl_retry, dc, 0)) {
		free(dc);
		return NULL;
	}
	return dc;
}

void dead_letters_free(struct dead_letters *dl)
{
	free(dl);
}

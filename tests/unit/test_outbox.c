/* test_outbox.c - the outbox feed served by a real server and consumers that
 * apply it to their own stores: order, exactly once, dead letters, retries,
 * restarts and two consumers sharing one database. */
#include "hearty.h"
#include "consumer.h"
#include "events.h"
#include "log.h"
#include "outbox.h"
#include "check.h"
#include "testutil.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>

#define WAIT_MS 5000          /* every wait in this suite is bounded by this */
#define MAX_PAY 64

static const char *const producer_migrations[] = { OUTBOX_SCHEMA, NULL };
static const char *const consumer_migrations[] = {
	CONSUMER_SCHEMA
	"CREATE TABLE applied(seq INTEGER PRIMARY KEY AUTOINCREMENT, position INTEGER NOT NULL,"
	" pay_id INTEGER NOT NULL, type TEXT NOT NULL);",
	NULL,
};

static char *dir;
static char base[64];                 /* the producer's server */
static struct store *producer;
static struct server *srv;
static struct outbox_feed *feed;
static struct dead_letters *dead_letters;   /* routes over the first consumer's store */
static struct store *cons1;                 /* the first consumer's store */

/* ---- stores ---------------------------------------------------------------- */

static struct store *open_store(const char *name, const char *const *migrations)
{
	struct store_options opt = { .migrations = migrations, .busy_timeout_ms = 2000, .max_batch = 64,
				     .max_readers = 4 };
	char path[1024], err[256] = "";
	struct store *st = NULL;

	tu_path(path, sizeof(path), dir, name);
	opt.path = path;
	if(!CHECK_INT(store_open(&st, &opt, err, sizeof(err)), HR_OK))
		printf("   %s\n", err);
	return st;
}

static int64_t read_int(struct store *st, const char *sql)
{
	int64_t v;
	if(!CHECK_INT(tu_store_int(st, sql, &v), HR_OK))
		printf("   query %s\n", sql);
	return v;
}

static void read_text(struct store *st, const char *sql, char *out, size_t outlen)
{
	if(!CHECK_INT(tu_store_text(st, sql, out, outlen), HR_OK))
		printf("   query %s\n", sql);
}

/* ---- the producer ---------------------------------------------------------- */

struct produce {
	int64_t first, n;     /* pay ids first .. first + n - 1, one event each */
	bool corrupt;         /* instead: one outbox row whose data is not JSON */
	int ret;              /* what the write answers after appending */
};

static int produce_fn(struct db *db, void *arg)
{
	static const char sql_corrupt[] = "INSERT INTO outbox(type, time, data) VALUES ('PayApproved', 't', 'not json')";
	struct produce *p = arg;

	if(p->corrupt) {
		struct db_stmt *s = db_prepare(db, sql_corrupt);
		return s && db_step(s) == DB_DONE ? p->ret : HR_ERR_STORE;
	}
	for(int64_t id = p->first; id < p->first + p->n; id++) {
		const struct pay_event ev = { .pay_id = id, .order_id = 1000 + id, .amount = 100 * id,
					      .customer_id = "c-1" };
		json_t *data = pay_event_data(&ev);
		int rc = data ? outbox_append(db, EV_PAY_APPROVED, data) : HR_ERR_NOMEM;
		json_decref(data);
		if(rc)
			return rc;
	}
	return p->ret;
}

static void produce(int64_t first, int64_t n)
{
	struct produce p = { .first = first, .n = n };
	CHECK_INT(store_write(producer, produce_fn, &p), HR_OK);
}

static int64_t last_position(void)
{
	return read_int(producer, "SELECT max(position) FROM outbox");
}

/* ---- the consumer side ----------------------------------------------------- */

/* What a consumer's handler does, and what it saw. */
struct sink {
	int64_t reject_pay;          /* rejected for good (parked) */
	int64_t transient_pay;       /* fails transient_left times first */
	atomic_int transient_left;
	int64_t conflict_pay;        /* answers HR_ERR_CONFLICT while conflicting */
	atomic_bool conflicting;
	atomic_int calls[MAX_PAY];   /* handler calls per pay id */
};

/* Inserts the event's row first, then decides: whatever is refused must leave no row. */
static int sink_handler(struct db *db, const struct event *ev, char *reason, size_t rlen, void *ctx)
{
	static const char sql[] = "INSERT INTO applied(position, pay_id, type) VALUES (?, ?, ?)";
	struct sink *sk = ctx;
	struct pay_event pe;
	struct db_stmt *s;

	if(pay_event_parse(ev->data, &pe, reason, rlen))
		return HR_ERR_REJECTED;
	if(pe.pay_id < MAX_PAY)
		atomic_fetch_add(&sk->calls[pe.pay_id], 1);
	s = db_prepare(db, sql);
	if(!s)
		return HR_ERR_STORE;
	db_bind_int(s, 1, ev->position);
	db_bind_int(s, 2, pe.pay_id);
	db_bind_text(s, 3, ev->type);
	if(db_step(s) != DB_DONE)
		return HR_ERR_STORE;
	if(pe.pay_id == sk->reject_pay) {
		snprintf(reason, rlen, "pay %lld is refused", (long long)pe.pay_id);
		return HR_ERR_REJECTED;
	}
	if(pe.pay_id == sk->transient_pay && atomic_fetch_sub(&sk->transient_left, 1) > 0)
		return HR_ERR_TRANSIENT;
	if(pe.pay_id == sk->conflict_pay && atomic_load(&sk->conflicting))
		return HR_ERR_CONFLICT;
	return HR_OK;
}

static struct consumer *start_consumer(struct store *st, struct sink *sk, const char *labels)
{
	struct consumer_options opt = {
		.feed = "unit", .metric_labels = labels, .base_url = base,
		.handler = sink_handler, .ctx = sk,
	};
	char err[256] = "";
	struct consumer *c;

	if(!CHECK_INT(consumer_options_from_env(&opt, err, sizeof(err)), 0)) {
		printf("   %s\n", err);
		return NULL;
	}
	c = consumer_start(st, &opt, err, sizeof(err));
	if(!CHECK(c != NULL))
		printf("   %s\n", err);
	return c;
}

struct reach {
	struct consumer *c;
	int64_t position;
};

static bool reached(void *arg)
{
	struct reach *r = arg;
	return consumer_position(r->c) >= r->position;
}

/* Waits (bounded) until c has applied up to position. */
static bool wait_position(struct consumer *c, int64_t position)
{
	struct reach r = { c, position };
	bool ok = tu_wait_until(reached, &r, WAIT_MS);

	if(!CHECK(ok))
		printf("   consumer at %lld, wanted %lld\n", (long long)consumer_position(c), (long long)position);
	return ok;
}

/* ---- HTTP helpers ---------------------------------------------------------- */

static long get(const char *path, struct tu_response *r)
{
	char url[256];
	snprintf(url, sizeof(url), "%s%s", base, path);
	tu_get(url, r);
	return r->status;
}

static long post(const char *path, const char *body, struct tu_response *r)
{
	static const char *const json_ct[] = { "Content-Type: application/json", NULL };
	char url[256];
	struct tu_request rq = { .method = "POST", .url = url, .headers = json_ct, .body = body,
				 .body_len = body ? strlen(body) : 0 };
	snprintf(url, sizeof(url), "%s%s", base, path);
	tu_http(&rq, r);
	return r->status;
}

static const char *jstr(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static int64_t jint(json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

/* ---- tests: the feed ------------------------------------------------------- */

static void test_producer_writes(void)
{
	struct produce undone = { .first = 90, .n = 2, .ret = HR_ERR_INVALID };

	produce(1, 3);
	/* A producer write that fails takes its events with it. */
	CHECK_INT(store_write(producer, produce_fn, &undone), HR_ERR_INVALID);
	produce(4, 2);
	CHECK_INT(read_int(producer, "SELECT count(*) FROM outbox"), 5);
	CHECK_INT(read_int(producer, "SELECT count(*) FROM outbox WHERE data LIKE '%\"payId\":9%'"), 0);
}

static void test_feed_pages(void)
{
	struct tu_response r;
	json_t *items, *ev;
	int64_t p1, p2;

	CHECK_INT(get("/events?after=0&limit=2", &r), 200);
	items = json_object_get(r.json, "items");
	if(CHECK_INT(json_array_size(items), 2)) {
		p1 = jint(json_array_get(items, 0), "position");
		p2 = jint(json_array_get(items, 1), "position");
		CHECK(p1 > 0 && p2 > p1);
		CHECK_INT(jint(r.json, "next"), p2);
		ev = json_object_get(json_array_get(items, 0), "event");
		char id[24];
		snprintf(id, sizeof(id), "%lld", (long long)p1);
		CHECK_STR(jstr(ev, "specversion"), "1.0");
		CHECK_STR(jstr(ev, "id"), id);
		CHECK_STR(jstr(ev, "source"), "/unit");
		CHECK_STR(jstr(ev, "type"), EV_PAY_APPROVED);
		CHECK_STR(jstr(ev, "datacontenttype"), "application/json");
		CHECK(jstr(ev, "time") && strlen(jstr(ev, "time")) == 24);
		CHECK_INT(jint(json_object_get(ev, "data"), "payId"), 1);
		CHECK_INT(jint(json_object_get(ev, "data"), "amount"), 100);
		CHECK_STR(jstr(json_object_get(ev, "data"), "customerId"), "c-1");
	}
	tu_response_release(&r);

	/* The default page holds everything so far, in position order. */
	CHECK_INT(get("/events?after=0", &r), 200);
	items = json_object_get(r.json, "items");
	CHECK_INT(json_array_size(items), 5);
	CHECK_INT(jint(r.json, "next"), last_position());
	for(size_t i = 1; i < json_array_size(items); i++)
		CHECK(jint(json_array_get(items, i), "position") > jint(json_array_get(items, i - 1), "position"));
	tu_response_release(&r);

	/* Nothing after the end, without waiting: next stays where it was. */
	char path[96];
	snprintf(path, sizeof(path), "/events?after=%lld", (long long)last_position());
	CHECK_INT(get(path, &r), 200);
	CHECK_INT(json_array_size(json_object_get(r.json, "items")), 0);
	CHECK_INT(jint(r.json, "next"), last_position());
	CHECK(r.secs < 0.5);
	tu_response_release(&r);

	static const char *const bad[] = {
		"/events?limit=0", "/events?limit=501", "/events?wait=30001", "/events?after=-1",
		"/events?after=abc", "/events?wait=-5", "/events?limit=1.5",
	};
	for(size_t i = 0; i < HR_ARRAY_LEN(bad); i++) {
		if(!CHECK_INT(get(bad[i], &r), 400))
			printf("   %s\n", bad[i]);
		CHECK_STR(jstr(json_object_get(r.json, "error"), "code"), "invalid_argument");
		tu_response_release(&r);
	}
}

/* Runs one producer write after a pause, from another thread. */
static void *produce_later(void *arg)
{
	struct produce *p = arg;
	tu_sleep_ms(200);
	CHECK_INT(store_write(producer, produce_fn, p), HR_OK);
	return NULL;
}

static void test_feed_long_poll(void)
{
	struct produce corrupt = { .corrupt = true };
	struct tu_response r;
	char path[128];
	int64_t last = last_position();
	json_t *item;
	pthread_t t;

	/* An empty long poll is held for its wait, then answers empty. */
	snprintf(path, sizeof(path), "/events?after=%lld&wait=300", (long long)last);
	CHECK_INT(get(path, &r), 200);
	CHECK_INT(json_array_size(json_object_get(r.json, "items")), 0);
	CHECK_INT(jint(r.json, "next"), last);
	CHECK(r.secs >= 0.28);
	tu_response_release(&r);

	/* A commit wakes it with the new event long before the wait ends. The
	 * event is a corrupt row: data that is not JSON is served as a string. */
	snprintf(path, sizeof(path), "/events?after=%lld&wait=4000", (long long)last);
	pthread_create(&t, NULL, produce_later, &corrupt);
	CHECK_INT(get(path, &r), 200);
	pthread_join(t, NULL);
	printf("   woken after %.3f s\n", r.secs);
	CHECK(r.secs >= 0.15 && r.secs < 2.0);
	item = json_array_get(json_object_get(r.json, "items"), 0);
	CHECK_INT(json_array_size(json_object_get(r.json, "items")), 1);
	CHECK_INT(jint(item, "position"), last_position());
	CHECK_STR(jstr(json_object_get(item, "event"), "data"), "not json");
	tu_response_release(&r);
}

/* ---- tests: consumers ------------------------------------------------------ */

static struct sink sink1 = { .reject_pay = 4, .transient_pay = 7, .transient_left = 1 };
/* The consumers the dead-letter routes serve (borrowed by the server). */
static struct consumer *dl_consumers[1];

static void test_options_from_env(void)
{
	struct consumer_options opt = { 0 };
	char err[256] = "";

	CHECK_INT(consumer_options_from_env(&opt, err, sizeof(err)), 0);
	CHECK_INT(opt.batch, 4);
	CHECK_INT(opt.wait_ms, 200);
	CHECK_INT(opt.retry_min_ms, 20);
	CHECK_INT(opt.retry_max_ms, 100);
	CHECK_INT(opt.connect_timeout_ms, 500);

	setenv("FEED_BATCH", "0", 1);
	CHECK_INT(consumer_options_from_env(&opt, err, sizeof(err)), -1);
	CHECK_CONTAINS(err, "FEED_BATCH");
	setenv("FEED_BATCH", "4", 1);
	setenv("FEED_RETRY_MAX_MS", "10", 1);
	CHECK_INT(consumer_options_from_env(&opt, err, sizeof(err)), -1);
	CHECK_CONTAINS(err, "FEED_RETRY_MAX_MS");
	setenv("FEED_RETRY_MAX_MS", "100", 1);
}

static void test_apply_in_order(void)
{
	char pays[256];
	int64_t last, v;

	if(!cons1)
		return;
	dl_consumers[0] = start_consumer(cons1, &sink1, "feed=\"unit1\"");
	if(!dl_consumers[0])
		return;
	/* More events while it runs: three writes, a pause between them. */
	tu_sleep_ms(50);
	produce(6, 3);
	tu_sleep_ms(50);
	produce(9, 2);
	last = last_position();
	CHECK_INT(read_int(producer, "SELECT count(*) FROM outbox"), 11);
	if(!wait_position(dl_consumers[0], last))
		return;
	CHECK_INT(consumer_position(dl_consumers[0]), last);

	/* Applied exactly once, in position order; the rejected one left no row. */
	read_text(cons1, "SELECT group_concat(pay_id) FROM (SELECT pay_id FROM applied ORDER BY seq)",
		  pays, sizeof(pays));
	CHECK_STR(pays, "1,2,3,5,6,7,8,9,10");
	CHECK_INT(read_int(cons1, "SELECT count(*) FROM (SELECT position, lag(position) OVER (ORDER BY seq)"
			   " AS prev FROM applied) WHERE prev >= position"), 0);
	CHECK_INT(read_int(cons1, "SELECT position FROM feed_positions WHERE feed = 'unit'"), last);

	/* The transient failure was retried: two calls, one row. */
	CHECK_INT(atomic_load(&sink1.calls[7]), 2);
	CHECK_INT(read_int(cons1, "SELECT count(*) FROM applied WHERE pay_id = 7"), 1);

	/* Two parked: the refused pay and the corrupt row, each once, with its reason. */
	CHECK_INT(read_int(cons1, "SELECT count(*) FROM dead_letters"), 2);
	read_text(cons1, "SELECT reason FROM dead_letters WHERE event LIKE '%\"payId\":4,%'", pays, sizeof(pays));
	CHECK_STR(pays, "pay 4 is refused");
	read_text(cons1, "SELECT status FROM dead_letters WHERE event LIKE '%\"payId\":4,%'", pays, sizeof(pays));
	CHECK_STR(pays, "PARKED");
	read_text(cons1, "SELECT feed FROM dead_letters WHERE event LIKE '%\"payId\":4,%'", pays, sizeof(pays));
	CHECK_STR(pays, "unit");
	v = read_int(cons1, "SELECT position FROM dead_letters WHERE event LIKE '%\"payId\":4,%'");
	CHECK(v > read_int(cons1, "SELECT position FROM applied WHERE pay_id = 3"));
	CHECK(v < read_int(cons1, "SELECT position FROM applied WHERE pay_id = 5"));
	read_text(cons1, "SELECT reason FROM dead_letters WHERE event LIKE '%not json%'", pays, sizeof(pays));
	CHECK_STR(pays, "event data is not a JSON object");

	CHECK_INT(tu_metric_series("feed_events_applied_total{feed=\"unit1\"}"), 9);
	CHECK_INT(tu_metric_series("feed_events_parked_total{feed=\"unit1\"}"), 2);
	CHECK_INT(tu_metric_series("feed_position{feed=\"unit1\"}"), last);
	CHECK(tu_metric_series("feed_errors_total{feed=\"unit1\"}") >= 1);
}

static void test_dead_letter_retry(void)
{
	struct tu_response r;
	char path[96];
	int64_t id, before;

	if(!cons1 || !dl_consumers[0])
		return;
	CHECK_INT(get("/deadLetters", &r), 200);
	CHECK_INT(json_array_size(json_object_get(r.json, "items")), 2);
	tu_response_release(&r);

	id = read_int(cons1, "SELECT id FROM dead_letters WHERE event LIKE '%\"payId\":4,%'");
	before = read_int(cons1, "SELECT count(*) FROM applied");
	snprintf(path, sizeof(path), "/deadLetters/%lld/retry", (long long)id);

	/* Re-driven as it is, the handler refuses it again: 422, still parked. */
	CHECK_INT(post(path, NULL, &r), 422);
	CHECK_STR(jstr(json_object_get(r.json, "error"), "code"), "event_rejected");
	CHECK_CONTAINS(jstr(json_object_get(r.json, "error"), "message"), "pay 4 is refused");
	tu_response_release(&r);
	CHECK_INT(read_int(cons1, "SELECT count(*) FROM applied"), before);

	/* With corrected data it is applied once, at its original position. */
	CHECK_INT(post(path, "{\"data\":{\"payId\":41,\"orderId\":2,\"customerId\":\"c-1\",\"amount\":5}}", &r), 200);
	CHECK_STR(jstr(r.json, "status"), "REDRIVEN");
	tu_response_release(&r);
	CHECK_INT(read_int(cons1, "SELECT count(*) FROM applied WHERE pay_id = 41"), 1);
	CHECK_INT(read_int(cons1, "SELECT position FROM applied WHERE pay_id = 41"),
		  read_int(cons1, "SELECT position FROM dead_letters WHERE event LIKE '%\"payId\":41%'"));

	/* Never twice; unknown ids are 404. */
	CHECK_INT(post(path, NULL, &r), 409);
	tu_response_release(&r);
	CHECK_INT(read_int(cons1, "SELECT count(*) FROM applied WHERE pay_id = 41"), 1);
	CHECK_INT(post("/deadLetters/999999/retry", NULL, &r), 404);
	tu_response_release(&r);
	CHECK_INT(post("/deadLetters/0/retry", NULL, &r), 400);
	tu_response_release(&r);
}

static void test_restart_resumes(void)
{
	int before[MAX_PAY];
	int64_t last, rows, t0;
	char pays[256];

	if(!cons1 || !dl_consumers[0])
		return;
	rows = read_int(cons1, "SELECT count(*) FROM applied");
	last = last_position();
	t0 = hr_mono_us();
	consumer_stop(dl_consumers[0]);
	dl_consumers[0] = NULL;
	CHECK((hr_mono_us() - t0) < 1500000);       /* an in-flight long poll is abandoned */

	produce(11, 2);
	for(int i = 0; i < MAX_PAY; i++)
		before[i] = atomic_load(&sink1.calls[i]);
	dl_consumers[0] = start_consumer(cons1, &sink1, "feed=\"unit1\"");
	if(!dl_consumers[0])
		return;
	/* It starts from the stored position, not from zero. */
	CHECK(consumer_position(dl_consumers[0]) >= last);
	if(!wait_position(dl_consumers[0], last_position()))
		return;
	CHECK_INT(read_int(cons1, "SELECT count(*) FROM applied"), rows + 2);
	read_text(cons1, "SELECT group_concat(pay_id) FROM (SELECT pay_id FROM applied"
		  " WHERE pay_id <> 41 ORDER BY seq)", pays, sizeof(pays));
	CHECK_STR(pays, "1,2,3,5,6,7,8,9,10,11,12");
	for(int i = 1; i <= 10; i++)
		if(!CHECK_INT(atomic_load(&sink1.calls[i]), before[i]))
			printf("   pay %d was applied again after the restart\n", i);
	CHECK_INT(atomic_load(&sink1.calls[11]), 1);
	CHECK_INT(atomic_load(&sink1.calls[12]), 1);
	CHECK_INT(read_int(cons1, "SELECT count(*) FROM dead_letters"), 2);
}

static struct sink sink2;

static void test_two_consumers_one_store(void)
{
	struct store *cons2 = open_store("consumer2.db", consumer_migrations);
	struct consumer *a, *b;
	int64_t last;

	if(!cons2)
		return;
	setenv("FEED_BATCH", "2", 1);       /* small batches: the two race more often */
	a = start_consumer(cons2, &sink2, "feed=\"unit2\"");
	b = start_consumer(cons2, &sink2, "feed=\"unit2\"");
	setenv("FEED_BATCH", "4", 1);
	for(int64_t id = 13; id <= 30; id += 2) {
		produce(id, 2);
		tu_sleep_ms(10);
	}
	last = last_position();
	if(a && b && wait_position(a, last) && wait_position(b, last)) {
		/* Every valid event once (pays 1..30), the corrupt row parked once. */
		CHECK_INT(read_int(cons2, "SELECT count(*) FROM applied"), 30);
		CHECK_INT(read_int(cons2, "SELECT count(DISTINCT position) FROM applied"), 30);
		CHECK_INT(read_int(cons2, "SELECT count(DISTINCT pay_id) FROM applied"), 30);
		CHECK_INT(read_int(cons2, "SELECT count(*) FROM dead_letters"), 1);
		CHECK_INT(read_int(cons2, "SELECT position FROM feed_positions WHERE feed = 'unit'"), last);
		/* A batch another instance applied first is dropped before its handler runs. */
		for(int i = 1; i <= 30; i++)
			if(!CHECK_INT(atomic_load(&sink2.calls[i]), 1))
				printf("   pay %d\n", i);
		CHECK_INT(tu_metric_series("feed_events_applied_total{feed=\"unit2\"}"), 30);
	}
	consumer_stop(a);
	consumer_stop(b);
	store_close(cons2);
}

static struct sink sink3 = { .conflict_pay = 1, .conflicting = true };

static void test_handler_conflict_backs_off(void)
{
	struct store *cons3;
	struct consumer *c;
	int calls;

	/* consumer_round() reads any HR_ERR_CONFLICT from the batch write as "another
	 * instance moved the position" and loops again at once; a handler's own
	 * conflict (a unique key taken) should be a transient failure with back-off. */
	cons3 = open_store("consumer3.db", consumer_migrations);
	setenv("FEED_RETRY_MIN_MS", "100", 1);
	setenv("FEED_RETRY_MAX_MS", "200", 1);
	c = cons3 ? start_consumer(cons3, &sink3, "feed=\"unit3\"") : NULL;
	setenv("FEED_RETRY_MIN_MS", "20", 1);
	setenv("FEED_RETRY_MAX_MS", "100", 1);
	if(c) {
		tu_sleep_ms(600);
		calls = atomic_load(&sink3.calls[1]);
		printf("   %d handler calls in 600 ms\n", calls);
		CHECK(calls <= 10);              /* 100 + 200 + 200 ms back-offs: about 4 */
		CHECK(tu_metric_series("feed_errors_total{feed=\"unit3\"}") >= 1);
		atomic_store(&sink3.conflicting, false);
		wait_position(c, last_position());
	}
	consumer_stop(c);
	store_close(cons3);
}

/* ---- shutdown -------------------------------------------------------------- */

struct poll_result {
	long status;
	double secs;
	size_t items;
};

static void *long_poll(void *arg)
{
	struct poll_result *pr = arg;
	struct tu_response r;
	char path[96];

	snprintf(path, sizeof(path), "/events?after=%lld&wait=5000", (long long)last_position());
	pr->status = get(path, &r);
	pr->secs = r.secs;
	pr->items = json_array_size(json_object_get(r.json, "items"));
	tu_response_release(&r);
	return NULL;
}

static void test_feed_stop_wakes_polls(void)
{
	struct poll_result pr = { 0 };
	pthread_t t;

	pthread_create(&t, NULL, long_poll, &pr);
	tu_sleep_ms(200);
	outbox_feed_stop(feed);
	pthread_join(t, NULL);
	CHECK_INT(pr.status, 200);
	CHECK_INT(pr.items, 0);
	CHECK(pr.secs < 1.5);
}

/* ---- setup ----------------------------------------------------------------- */

static bool start_producer(void)
{
	struct server_options opt = {
		.bind_addr = "127.0.0.1", .http_threads = 2, .workers = 8, .max_inflight = 64,
		.max_connections = 64, .max_body = 65536, .idle_timeout_s = 5,
	};
	char err[256] = "";

	producer = open_store("producer.db", producer_migrations);
	cons1 = open_store("consumer1.db", consumer_migrations);
	if(!producer || !cons1)
		return false;
	for(int attempt = 0; attempt < 5; attempt++) {
		opt.port = tu_free_port();
		srv = server_new(&opt, err, sizeof(err));
		feed = srv ? outbox_feed_new(producer, srv, "/unit") : NULL;
		dead_letters = feed ? dead_letters_new(srv, cons1, dl_consumers, 1) : NULL;
		if(dead_letters && server_start(srv, err, sizeof(err)) == 0) {
			snprintf(base, sizeof(base), "http://127.0.0.1:%d", opt.port);
			return true;
		}
		/* The port was taken between the probe and the bind: try another. */
		server_free(srv);
		dead_letters_free(dead_letters);
		outbox_feed_free(feed);
		srv = NULL;
		feed = NULL;
		dead_letters = NULL;
	}
	CHECK(!"the producer's server did not start");
	printf("   %s\n", err);
	return false;
}

int main(void)
{
	log_init("unit-outbox", LOG_ERROR);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	setenv("FEED_WAIT_MS", "200", 1);
	setenv("FEED_RETRY_MIN_MS", "20", 1);
	setenv("FEED_RETRY_MAX_MS", "100", 1);
	setenv("FEED_BATCH", "4", 1);
	setenv("CONNECT_TIMEOUT_MS", "500", 1);
	dir = tu_tmpdir();
	if(CHECK(dir != NULL) && start_producer()) {
		RUN(test_producer_writes);
		RUN(test_feed_pages);
		RUN(test_feed_long_poll);
		RUN(test_options_from_env);
		RUN(test_apply_in_order);
		RUN(test_dead_letter_retry);
		RUN(test_restart_resumes);
		RUN(test_two_consumers_one_store);
		RUN(test_handler_conflict_backs_off);
		consumer_stop(dl_consumers[0]);
		dl_consumers[0] = NULL;
		RUN(test_feed_stop_wakes_polls);
	}
	server_free(srv);
	dead_letters_free(dead_letters);
	store_close(producer);      /* before the feed: its commit hook points there */
	outbox_feed_free(feed);
	store_close(cons1);
	tu_rmdir(dir);
	curl_global_cleanup();
	return check_done();
}

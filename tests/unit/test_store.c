/* test_store.c - the SQLite store on a real file: migrations, group commit,
 * savepoint isolation of failing writes, constraint mapping, the commit hook. */
#include "hearty.h"
#include "store.h"
#include "log.h"
#include "check.h"
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>

#define M1 "CREATE TABLE mlog(n INTEGER NOT NULL); INSERT INTO mlog VALUES (1);" \
	   "CREATE TABLE t(id INTEGER PRIMARY KEY, thread INTEGER NOT NULL, i INTEGER NOT NULL," \
	   " v TEXT UNIQUE);"
#define M2 "INSERT INTO mlog VALUES (2);"
#define M3 "INSERT INTO mlog VALUES (3);"

static const char *const migrations_v2[] = { M1, M2, NULL };
static const char *const migrations_v3[] = { M1, M2, M3, NULL };
/* Version 2 whose second step fails half-way: its first statement must not stay. */
static const char *const migrations_v2_bad[] = { M1, M2 "INSERT INTO no_such_table VALUES (1);", NULL };

static char *dir;
static char db_path[1024];

static int open_store(struct store **st, const char *const *migrations, char *err, size_t errlen)
{
	struct store_options opt = {
		.path = db_path, .migrations = migrations, .busy_timeout_ms = 2000,
		.max_batch = 64, .max_readers = 2,
	};
	*st = NULL;
	return store_open(st, &opt, err, errlen);
}

/* The first column of the first row of sql, read through store_read; -1 on error. */
static int64_t read_int(struct store *st, const char *sql)
{
	int64_t v;
	int rc = tu_store_int(st, sql, &v);
	if(!CHECK_INT(rc, HR_OK))
		printf("   query %s\n", sql);
	return v;
}

/* ---- writes ---------------------------------------------------------------- */

struct insert {
	int64_t thread, i;
	const char *v;        /* NULL: no unique value */
	int ret;              /* what the write answers after inserting */
	int64_t id;           /* out: rowid */
};

static int insert_fn(struct db *db, void *arg)
{
	static const char sql[] = "INSERT INTO t(thread, i, v) VALUES (?, ?, ?)";
	struct insert *in = arg;
	struct db_stmt *s = db_prepare(db, sql);
	int rc;

	if(!s)
		return HR_ERR_STORE;
	db_bind_int(s, 1, in->thread);
	db_bind_int(s, 2, in->i);
	db_bind_text(s, 3, in->v);
	rc = db_step(s);
	if(rc != DB_DONE)
		return rc;
	if(!CHECK_INT(db_changes(db), 1))
		return HR_ERR_STORE;
	in->id = db_last_id(db);
	return in->ret;
}

/* Two inserts in one write: the second may hit the unique constraint. */
static int insert_two_fn(struct db *db, void *arg)
{
	struct insert *pair = arg;
	int rc = insert_fn(db, &pair[0]);
	return rc ? rc : insert_fn(db, &pair[1]);
}

static int bad_sql_fn(struct db *db, void *arg)
{
	return db_prepare(db, "SELEKT nothing") ? HR_OK : HR_ERR_STORE;
}

/* ---- tests ----------------------------------------------------------------- */

static void test_migrations(void)
{
	struct store *st;
	char err[512] = "";

	/* A failing migration is undone as a whole and the open fails. */
	CHECK_INT(open_store(&st, migrations_v2_bad, err, sizeof(err)), HR_ERR_STORE);
	CHECK(st == NULL);
	CHECK_CONTAINS(err, "schema migration 2 failed");

	/* The first good open applies what is missing: migration 2 once. */
	err[0] = '\0';
	if(!CHECK_INT(open_store(&st, migrations_v2, err, sizeof(err)), HR_OK)) {
		printf("   %s\n", err);
		return;
	}
	CHECK_INT(read_int(st, "PRAGMA user_version"), 2);
	CHECK_INT(read_int(st, "SELECT count(*) FROM mlog"), 2);
	CHECK_INT(read_int(st, "SELECT sum(n) FROM mlog"), 3);
	CHECK(store_ping(st));
	store_close(st);

	/* Reopening with the same list applies nothing again. */
	CHECK_INT(open_store(&st, migrations_v2, err, sizeof(err)), HR_OK);
	CHECK_INT(read_int(st, "PRAGMA user_version"), 2);
	CHECK_INT(read_int(st, "SELECT count(*) FROM mlog"), 2);
	store_close(st);

	/* A longer list applies only the new step. */
	CHECK_INT(open_store(&st, migrations_v3, err, sizeof(err)), HR_OK);
	CHECK_INT(read_int(st, "PRAGMA user_version"), 3);
	CHECK_INT(read_int(st, "SELECT count(*) FROM mlog"), 3);
	CHECK_INT(read_int(st, "SELECT sum(n) FROM mlog"), 6);
	store_close(st);

	/* A database newer than the program is refused, and left as it is. */
	err[0] = '\0';
	CHECK_INT(open_store(&st, migrations_v2, err, sizeof(err)), HR_ERR_STORE);
	CHECK(st == NULL);
	CHECK_CONTAINS(err, "schema version 3, newer than this program's 2");
	CHECK_INT(open_store(&st, NULL, err, sizeof(err)), HR_ERR_STORE);
	CHECK_INT(open_store(&st, migrations_v3, err, sizeof(err)), HR_OK);
	CHECK_INT(read_int(st, "SELECT count(*) FROM mlog"), 3);
	store_close(st);
}

static void test_open_failure(void)
{
	struct store *st = NULL;
	struct store_options opt = { .path = "/nonexistent-hearty-dir/x.db" };
	char err[512] = "";

	CHECK(store_open(&st, &opt, err, sizeof(err)) != HR_OK);
	CHECK_CONTAINS(err, "/nonexistent-hearty-dir/x.db");
	store_close(NULL);    /* a no-op */
}

static void test_write_then_read(struct store *st)
{
	struct insert in = { .thread = 99, .i = 1, .v = "first", .ret = HR_OK };
	struct insert undone = { .thread = 99, .i = 2, .v = "undone", .ret = HR_ERR_INVALID };
	int64_t before = read_int(st, "SELECT count(*) FROM t");

	CHECK_INT(store_write(st, insert_fn, &in), HR_OK);
	CHECK(in.id > 0);
	CHECK_INT(read_int(st, "SELECT count(*) FROM t"), before + 1);
	CHECK_INT(read_int(st, "SELECT id FROM t WHERE v = 'first'"), in.id);

	/* A write that answers an error keeps nothing, and its answer comes back. */
	CHECK_INT(store_write(st, insert_fn, &undone), HR_ERR_INVALID);
	CHECK_INT(read_int(st, "SELECT count(*) FROM t"), before + 1);
	CHECK_INT(read_int(st, "SELECT count(*) FROM t WHERE v = 'undone'"), 0);

	/* SQL that does not compile fails the write; the store goes on. */
	CHECK_INT(store_write(st, bad_sql_fn, NULL), HR_ERR_STORE);
	in.v = "after-bad-sql";
	CHECK_INT(store_write(st, insert_fn, &in), HR_OK);
	CHECK_INT(read_int(st, "SELECT count(*) FROM t"), before + 2);
}

static void test_conflict(struct store *st)
{
	struct insert dup = { .thread = 98, .i = 1, .v = "dup", .ret = HR_OK };
	struct insert pair[2] = {
		{ .thread = 98, .i = 2, .v = "pair-first", .ret = HR_OK },
		{ .thread = 98, .i = 3, .v = "dup", .ret = HR_OK },
	};

	CHECK_INT(store_write(st, insert_fn, &dup), HR_OK);
	CHECK_INT(store_write(st, insert_fn, &dup), HR_ERR_CONFLICT);
	CHECK_INT(read_int(st, "SELECT count(*) FROM t WHERE v = 'dup'"), 1);
	/* The conflict undoes the whole write, its first insert included. */
	CHECK_INT(store_write(st, insert_two_fn, pair), HR_ERR_CONFLICT);
	CHECK_INT(read_int(st, "SELECT count(*) FROM t WHERE thread = 98"), 1);
	CHECK_INT(read_int(st, "SELECT count(*) FROM t WHERE v = 'pair-first'"), 0);
}

/* ---- concurrency and group commit ----------------------------------------- */

#define THREADS 8
#define WRITES  200

struct writer_arg {
	struct store *st;
	int thread;
	int wrong;            /* answers that were not the expected ones */
};

static atomic_int commits_seen;

static void on_commit(void *arg)
{
	atomic_int *n = arg;
	atomic_fetch_add(n, 1);
}

static void *writer_thread(void *arg)
{
	struct writer_arg *wa = arg;

	for(int i = 0; i < WRITES; i++) {
		/* Odd writes insert and then fail: they must leave nothing. */
		struct insert in = { .thread = 1000 + wa->thread, .i = i,
				     .ret = (i % 2) ? HR_ERR_INVALID : HR_OK };
		int rc = store_write(wa->st, insert_fn, &in);
		if(rc != in.ret)
			wa->wrong++;
	}
	return NULL;
}

static void test_concurrent_writes(struct store *st)
{
	pthread_t threads[THREADS];
	struct writer_arg args[THREADS];
	int64_t writes0 = tu_metric_sum("store_writes_total");
	int64_t commits0 = tu_metric_sum("store_commits_total");
	int64_t writes, commits;
	int hooks0 = atomic_load(&commits_seen);

	for(int t = 0; t < THREADS; t++) {
		args[t] = (struct writer_arg){ .st = st, .thread = t };
		pthread_create(&threads[t], NULL, writer_thread, &args[t]);
	}
	for(int t = 0; t < THREADS; t++) {
		pthread_join(threads[t], NULL);
		CHECK_INT(args[t].wrong, 0);
	}
	CHECK_INT(read_int(st, "SELECT count(*) FROM t WHERE thread >= 1000"), THREADS * WRITES / 2);
	CHECK_INT(read_int(st, "SELECT count(*) FROM t WHERE thread >= 1000 AND i % 2 = 1"), 0);
	CHECK_INT(read_int(st, "SELECT count(DISTINCT thread) FROM t WHERE thread >= 1000"), THREADS);
	CHECK_INT(read_int(st, "SELECT count(*) FROM t WHERE thread = 1003"), WRITES / 2);

	/* Every write went through a commit; several shared one. */
	writes = tu_metric_sum("store_writes_total") - writes0;
	commits = tu_metric_sum("store_commits_total") - commits0;
	printf("   %lld writes in %lld commits\n", (long long)writes, (long long)commits);
	CHECK_INT(writes, THREADS * WRITES);
	CHECK(commits > 0);
	CHECK(writes > commits);
	/* The hook ran once per commit. */
	CHECK_INT(atomic_load(&commits_seen) - hooks0, commits);
}

static void test_commit_hook(struct store *st)
{
	struct insert in = { .thread = 97, .i = 1, .ret = HR_OK };
	int before = atomic_load(&commits_seen);

	/* The hook has run by the time store_write returns. */
	CHECK_INT(store_write(st, insert_fn, &in), HR_OK);
	CHECK_INT(atomic_load(&commits_seen), before + 1);
	in.ret = HR_ERR_INVALID;
	CHECK_INT(store_write(st, insert_fn, &in), HR_ERR_INVALID);
	CHECK_INT(atomic_load(&commits_seen), before + 2);
}

/* ---- statements left mid-way ----------------------------------------------- */

static const char sql_latest[] = "SELECT v FROM t WHERE thread = 96 ORDER BY id DESC LIMIT 1";
static const char sql_one[] = "SELECT 1";

struct latest {
	int warmup;           /* prepares of another statement before the read */
	char v[64];
};

/* Reads the latest thread-96 value, stepping once and leaving the statement
 * mid-way (a handler may stop at the first row; the store resets it). */
static int latest_fn(struct db *db, void *arg)
{
	struct latest *l = arg;
	struct db_stmt *s;

	for(int i = 0; i < l->warmup; i++) {
		s = db_prepare(db, sql_one);
		if(!s || db_step(s) != DB_ROW)
			return HR_ERR_STORE;
	}
	s = db_prepare(db, sql_latest);
	if(!s)
		return HR_ERR_STORE;
	if(db_step(s) != DB_ROW)
		return HR_ERR_NOT_FOUND;
	snprintf(l->v, sizeof(l->v), "%s", db_col_text(s, 0));
	return HR_OK;
}

/* Reads latest with warmup prepares, writes a new value, and reads it back
 * through a statement other than the one left mid-way. */
static void check_fresh_after_midway(struct store *st, int warmup, const char *value)
{
	struct latest l = { .warmup = warmup };
	struct insert in = { .thread = 96, .i = warmup, .v = value, .ret = HR_OK };
	int64_t before;

	CHECK_INT(store_read(st, latest_fn, &l), HR_OK);
	before = read_int(st, "SELECT count(*) FROM t WHERE thread = 96");
	CHECK_INT(store_write(st, insert_fn, &in), HR_OK);
	/* The pool keeps two readers: read often enough to meet both. */
	for(int i = 0; i < 4; i++)
		if(!CHECK_INT(read_int(st, "SELECT count(*) FROM t WHERE thread = 96"), before + 1))
			printf("   a reader saw a snapshot from before the write (warmup %d)\n", warmup);
	l.v[0] = '\0';
	CHECK_INT(store_read(st, latest_fn, &l), HR_OK);
	CHECK_STR(l.v, value);
}

static void test_midway_statements(struct store *st)
{
	struct insert seed = { .thread = 96, .i = 0, .v = "seed", .ret = HR_OK };

	CHECK_INT(store_write(st, insert_fn, &seed), HR_OK);
	check_fresh_after_midway(st, 0, "v-0");
	check_fresh_after_midway(st, 10, "v-10");
}

static void test_many_statements_in_one_callback(struct store *st)
{
	/* db_prepare records at most 64 statements per callback (MAX_USED) and
	 * counts a statement again each time it is prepared; the 65th is never
	 * reset, so its read transaction outlives the callback. */
	check_fresh_after_midway(st, 70, "v-70");
}

int main(void)
{
	struct store *st;
	char err[512] = "";

	log_init("unit-store", LOG_ERROR);
	dir = tu_tmpdir();
	if(!CHECK(dir != NULL))
		return check_done();
	tu_path(db_path, sizeof(db_path), dir, "store.db");

	RUN(test_migrations);
	RUN(test_open_failure);
	if(CHECK_INT(open_store(&st, migrations_v3, err, sizeof(err)), HR_OK)) {
		store_on_commit(st, on_commit, &commits_seen);
		RUN_WITH(test_write_then_read, st);
		RUN_WITH(test_conflict, st);
		RUN_WITH(test_concurrent_writes, st);
		RUN_WITH(test_commit_hook, st);
		RUN_WITH(test_midway_statements, st);
		RUN_WITH(test_many_statements_in_one_callback, st);
		store_close(st);
	}
	tu_rmdir(dir);
	return check_done();
}

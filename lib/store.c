/*
 * store.c - SQLite backend: one writer thread with group commit, pooled readers.
 */
#include "hearty.h"
#include "store.h"
#include "log.h"
#include "metrics.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STMT_CACHE 64

struct db_stmt {
	const char *sql;        /* the key: address of the caller's SQL text */
	sqlite3_stmt *stmt;
	bool used;              /* handed out in the current callback (listed in db->used) */
};

struct db {
	sqlite3 *conn;
	struct db_stmt cache[STMT_CACHE];
	int ncache;
	struct db_stmt *used[STMT_CACHE]; /* handed out during the current callback, once each */
	int nused;
	struct db *next_free;             /* reader pool link */
};

struct write_job {
	store_fn fn;
	void *arg;
	int rc;
	bool done;
	pthread_cond_t cond;
	struct write_job *next;
};

struct store {
	char *path;
	int busy_timeout_ms;
	int max_batch;
	int max_readers;

	struct db writer;
	pthread_t writer_thread;
	bool writer_started;
	pthread_mutex_t lock;
	pthread_cond_t queue_cond;
	struct write_job *head, *tail;
	bool stopping;

	pthread_mutex_t readers_lock;
	struct db *free_readers;
	int nreaders;

	void (*on_commit)(void *);
	void *on_commit_arg;

	struct metric *m_commits, *m_writes, *m_failed;
};

/* ---- connections and statements ---------------------------------------- */

static int conn_open(struct store *st, struct db *db, bool readonly, char *err, size_t errlen)
{
	int flags = SQLITE_OPEN_NOMUTEX | (readonly ? SQLITE_OPEN_READONLY
					   : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
	char *emsg = NULL;

	memset(db, 0, sizeof(*db));
	if(sqlite3_open_v2(st->path, &db->conn, flags, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "cannot open %s: %s", st->path,
			 db->conn ? sqlite3_errmsg(db->conn) : "out of memory");
		sqlite3_close(db->conn);
		db->conn = NULL;
		return HR_ERR_STORE;
	}
	sqlite3_busy_timeout(db->conn, st->busy_timeout_ms);
	sqlite3_extended_result_codes(db->conn, 1);
	/* WAL + FULL: every commit is on disk before a 2xx; readers never block the writer. */
	if(!readonly && sqlite3_exec(db->conn, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
				     "PRAGMA foreign_keys=ON;", NULL, NULL, &emsg) != SQLITE_OK) {
		snprintf(err, errlen, "cannot set up %s: %s", st->path, emsg ? emsg : "?");
		sqlite3_free(emsg);
		sqlite3_close(db->conn);
		db->conn = NULL;
		return HR_ERR_STORE;
	}
	return HR_OK;
}

static void conn_close(struct db *db)
{
	for(int i = 0; i < db->ncache; i++)
		sqlite3_finalize(db->cache[i].stmt);
	db->ncache = 0;
	sqlite3_close(db->conn);
	db->conn = NULL;
}

struct db_stmt *db_prepare(struct db *db, const char *sql)
{
	struct db_stmt *s = NULL;

	for(int i = 0; i < db->ncache; i++) {
		if(db->cache[i].sql == sql) {
			s = &db->cache[i];
			break;
		}
	}
	if(!s) {
		sqlite3_stmt *stmt = NULL;
		if(sqlite3_prepare_v3(db->conn, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL) != SQLITE_OK) {
			log_event(LOG_ERROR, "SQL does not compile",
				  json_pack("{s:s,s:s}", "sql", sql, "error", sqlite3_errmsg(db->conn)));
			return NULL;
		}
		if(db->ncache < STMT_CACHE) {
			s = &db->cache[db->ncache++];
			s->used = false;
		} else {
			/* Should not happen: services use far fewer statements. The
			 * evicted slot may be in use: it is reset with the new one. */
			s = &db->cache[STMT_CACHE - 1];
			sqlite3_finalize(s->stmt);
		}
		s->sql = sql;
		s->stmt = stmt;
	}
	sqlite3_reset(s->stmt);
	sqlite3_clear_bindings(s->stmt);
	if(!s->used) {
		s->used = true;
		db->used[db->nused++] = s;
	}
	return s;
}

/* Resets everything a callback used, so no statement holds a lock or a snapshot. */
static void db_release_used(struct db *db)
{
	for(int i = 0; i < db->nused; i++) {
		sqlite3_reset(db->used[i]->stmt);
		db->used[i]->used = false;
	}
	db->nused = 0;
}

void db_release(struct db *db)
{
	db_release_used(db);
}

void db_bind_int(struct db_stmt *s, int idx, int64_t v) { sqlite3_bind_int64(s->stmt, idx, v); }
void db_bind_null(struct db_stmt *s, int idx) { sqlite3_bind_null(s->stmt, idx); }

void db_bind_text(struct db_stmt *s, int idx, const char *v)
{
	if(v)
		sqlite3_bind_text(s->stmt, idx, v, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(s->stmt, idx);
}

int db_step(struct db_stmt *s)
{
	int rc = sqlite3_step(s->stmt);

	if(rc == SQLITE_ROW)
		return DB_ROW;
	if(rc == SQLITE_DONE)
		return DB_DONE;
	if((rc & 0xff) == SQLITE_CONSTRAINT)
		return HR_ERR_CONFLICT;
	log_event(LOG_ERROR, "SQL failed",
		  json_pack("{s:s,s:s}", "sql", s->sql, "error", sqlite3_errmsg(sqlite3_db_handle(s->stmt))));
	return HR_ERR_STORE;
}

int64_t db_col_int(struct db_stmt *s, int col) { return sqlite3_column_int64(s->stmt, col); }
bool db_col_null(struct db_stmt *s, int col) { return sqlite3_column_type(s->stmt, col) == SQLITE_NULL; }

const char *db_col_text(struct db_stmt *s, int col)
{
	const unsigned char *t = sqlite3_column_text(s->stmt, col);
	return t ? (const char *)t : "";
}

int db_exec(struct db *db, const char *sql)
{
	char *emsg = NULL;

	if(sqlite3_exec(db->conn, sql, NULL, NULL, &emsg) == SQLITE_OK)
		return HR_OK;
	log_event(LOG_ERROR, "SQL failed", json_pack("{s:s,s:s}", "sql", sql, "error", emsg ? emsg : "?"));
	sqlite3_free(emsg);
	return HR_ERR_STORE;
}

int db_run(struct db *db, const char *sql)
{
	struct db_stmt *s = db_prepare(db, sql);
	return s && db_step(s) == DB_DONE ? HR_OK : HR_ERR_STORE;
}

int db_changes(struct db *db) { return sqlite3_changes(db->conn); }
int64_t db_last_id(struct db *db) { return sqlite3_last_insert_rowid(db->conn); }

/* ---- schema ------------------------------------------------------------- */

static int migrate(struct store *st, const char *const *migrations, char *err, size_t errlen)
{
	struct db *db = &st->writer;
	struct db_stmt *s;
	int64_t version = 0;
	int n = 0;

	while(migrations && migrations[n])
		n++;
	s = db_prepare(db, "PRAGMA user_version");
	if(s && db_step(s) == DB_ROW)
		version = db_col_int(s, 0);
	db_release_used(db);
	if(version > n) {
		snprintf(err, errlen, "%s has schema version %lld, newer than this program's %d",
			 st->path, (long long)version, n);
		return HR_ERR_STORE;
	}
	for(int64_t v = version; v < n; v++) {
		char pragma[48];
		snprintf(pragma, sizeof(pragma), "PRAGMA user_version=%lld", (long long)(v + 1));
		if(db_exec(db, "BEGIN IMMEDIATE") || db_exec(db, migrations[v]) ||
		   db_exec(db, pragma) || db_exec(db, "COMMIT")) {
			db_exec(db, "ROLLBACK");
			snprintf(err, errlen, "%s: schema migration %lld failed", st->path, (long long)(v + 1));
			return HR_ERR_STORE;
		}
	}
	return HR_OK;
}

/* ---- the writer --------------------------------------------------------- */

static void run_job(struct db *db, struct write_job *job)
{
	if(db_run(db, "SAVEPOINT job")) {
		job->rc = HR_ERR_STORE;
		return;
	}
	job->rc = job->fn(db, job->arg);
	db_release_used(db);
	if(job->rc != HR_OK)
		db_run(db, "ROLLBACK TO job");
	db_run(db, "RELEASE job");
	db_release_used(db);
}

/* Commits one batch: BEGIN, every job in its savepoint, one COMMIT. */
static void commit_batch(struct store *st, struct write_job *batch, int count)
{
	struct db *db = &st->writer;
	int rc = db_run(db, "BEGIN IMMEDIATE");

	for(struct write_job *j = batch; j; j = j->next) {
		if(rc)
			j->rc = HR_ERR_STORE;
		else
			run_job(db, j);
	}
	if(!rc)
		rc = db_run(db, "COMMIT");
	db_release_used(db);
	if(rc) {
		if(!sqlite3_get_autocommit(db->conn))
			db_exec(db, "ROLLBACK");
		metric_add(st->m_failed, count);
		for(struct write_job *j = batch; j; j = j->next)
			if(j->rc == HR_OK)
				j->rc = HR_ERR_STORE;
	} else {
		metric_add(st->m_commits, 1);
		metric_add(st->m_writes, count);
		if(st->on_commit)
			st->on_commit(st->on_commit_arg);
	}
}

static void *writer_main(void *arg)
{
	struct store *st = arg;

	for(;;) {
		struct write_job *batch, *last;
		int count = 1;

		pthread_mutex_lock(&st->lock);
		while(!st->head && !st->stopping)
			pthread_cond_wait(&st->queue_cond, &st->lock);
		if(!st->head) {
			pthread_mutex_unlock(&st->lock);
			break;
		}
		/* Take up to max_batch waiting writes. */
		batch = last = st->head;
		while(last->next && count < st->max_batch) {
			last = last->next;
			count++;
		}
		st->head = last->next;
		if(!st->head)
			st->tail = NULL;
		last->next = NULL;
		pthread_mutex_unlock(&st->lock);

		commit_batch(st, batch, count);

		pthread_mutex_lock(&st->lock);
		for(struct write_job *j = batch, *next; j; j = next) {
			next = j->next;  /* j lives on its caller's stack: read before signalling */
			j->done = true;
			pthread_cond_signal(&j->cond);
		}
		pthread_mutex_unlock(&st->lock);
	}
	return NULL;
}

int store_write(struct store *st, store_fn fn, void *arg)
{
	struct write_job job = { .fn = fn, .arg = arg, .rc = HR_OK };
	int rc;

	pthread_cond_init(&job.cond, NULL);
	pthread_mutex_lock(&st->lock);
	if(st->stopping) {
		pthread_mutex_unlock(&st->lock);
		pthread_cond_destroy(&job.cond);
		return HR_ERR_STOPPED;
	}
	if(st->tail)
		st->tail->next = &job;
	else
		st->head = &job;
	st->tail = &job;
	pthread_cond_signal(&st->queue_cond);
	while(!job.done)
		pthread_cond_wait(&job.cond, &st->lock);
	rc = job.rc;
	pthread_mutex_unlock(&st->lock);
	pthread_cond_destroy(&job.cond);
	return rc;
}

void store_on_commit(struct store *st, void (*fn)(void *arg), void *arg)
{
	st->on_commit = fn;
	st->on_commit_arg = arg;
}

/* ---- readers ------------------------------------------------------------ */

static struct db *reader_take(struct store *st)
{
	struct db *db;
	char err[256];

	pthread_mutex_lock(&st->readers_lock);
	db = st->free_readers;
	if(db) {
		st->free_readers = db->next_free;
		st->nreaders--;
	}
	pthread_mutex_unlock(&st->readers_lock);
	if(db)
		return db;
	db = calloc(1, sizeof(*db));
	if(!db)
		return NULL;
	if(conn_open(st, db, true, err, sizeof(err))) {
		log_event(LOG_ERROR, "cannot open a read connection", json_pack("{s:s}", "error", err));
		free(db);
		return NULL;
	}
	return db;
}

static void reader_give(struct store *st, struct db *db)
{
	pthread_mutex_lock(&st->readers_lock);
	if(st->nreaders < st->max_readers) {
		db->next_free = st->free_readers;
		st->free_readers = db;
		st->nreaders++;
		db = NULL;
	}
	pthread_mutex_unlock(&st->readers_lock);
	if(db) {
		conn_close(db);
		free(db);
	}
}

int store_read(struct store *st, store_fn fn, void *arg)
{
	struct db *db = reader_take(st);
	int rc;

	if(!db)
		return HR_ERR_STORE;
	if(db_exec(db, "BEGIN")) {
		reader_give(st, db);
		return HR_ERR_STORE;
	}
	rc = fn(db, arg);
	db_release_used(db);
	db_exec(db, "COMMIT");
	reader_give(st, db);
	return rc;
}

static int ping_fn(struct db *db, void *arg)
{
	struct db_stmt *s = db_prepare(db, "SELECT 1");
	return s && db_step(s) == DB_ROW ? HR_OK : HR_ERR_STORE;
}

bool store_ping(struct store *st)
{
	return store_read(st, ping_fn, NULL) == HR_OK;
}

/* ---- life cycle --------------------------------------------------------- */

int store_open(struct store **out, const struct store_options *opt, char *err, size_t errlen)
{
	struct store *st = calloc(1, sizeof(*st));
	int rc;

	if(!st || !(st->path = strdup(opt->path))) {
		free(st);
		snprintf(err, errlen, "out of memory");
		return HR_ERR_NOMEM;
	}
	st->busy_timeout_ms = opt->busy_timeout_ms > 0 ? opt->busy_timeout_ms : 5000;
	st->max_batch = opt->max_batch > 0 ? opt->max_batch : 256;
	st->max_readers = opt->max_readers > 0 ? opt->max_readers : 16;
	pthread_mutex_init(&st->lock, NULL);
	pthread_cond_init(&st->queue_cond, NULL);
	pthread_mutex_init(&st->readers_lock, NULL);
	rc = conn_open(st, &st->writer, false, err, errlen);
	if(rc)
		goto fail;
	rc = migrate(st, opt->migrations, err, errlen);
	if(rc)
		goto fail;
	st->m_commits = metrics_counter("store_commits_total", NULL, "Transactions committed (each one fsync).");
	st->m_writes = metrics_counter("store_writes_total", NULL, "Writes committed; writes/commits is the group-commit batch size.");
	st->m_failed = metrics_counter("store_write_failures_total", NULL, "Writes lost to a failed commit.");
	if(pthread_create(&st->writer_thread, NULL, writer_main, st)) {
		snprintf(err, errlen, "cannot start the writer thread");
		rc = HR_ERR_STORE;
		goto fail;
	}
	st->writer_started = true;
	*out = st;
	return HR_OK;
fail:
	store_close(st);
	return rc;
}

void store_close(struct store *st)
{
	struct db *db;

	if(!st)
		return;
	pthread_mutex_lock(&st->lock);
	st->stopping = true;
	pthread_cond_broadcast(&st->queue_cond);
	pthread_mutex_unlock(&st->lock);
	if(st->writer_started)
		pthread_join(st->writer_thread, NULL);
	for(db = st->free_readers; db; db = st->free_readers) {
		st->free_readers = db->next_free;
		conn_close(db);
		free(db);
	}
	if(st->writer.conn)
		conn_close(&st->writer);
	pthread_mutex_destroy(&st->lock);
	pthread_cond_destroy(&st->queue_cond);
	pthread_mutex_destroy(&st->readers_lock);
	free(st->path);
	free(st);
}

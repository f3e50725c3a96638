/*
 * store.h - the service's database, behind a small interface.
 *
 * The embedded backend is SQLite in WAL mode with synchronous=FULL: a write
 * that returned HR_OK is on disk. All writes go through one writer thread
 * (SQLite's busy handler is unfair to competing writers). The writer takes
 * every write waiting in its queue and commits them together, one fsync for
 * the batch (group commit); each write runs in its own savepoint, so one
 * failing write does not undo the others. Reads use a pool of read-only
 * connections and never wait for the writer.
 *
 * SQL passed here is kept portable between SQLite and PostgreSQL: "?"
 * placeholders, no SQLite-only functions in service code.
 *
 * Statements are prepared once per connection and cached by the address of
 * the SQL text, so pass string literals (or strings that live as long as the
 * store). Every statement handed out inside a callback is reset when the
 * callback returns: callers never reset or finalize.
 */
#ifndef HEARTY_STORE_H
#define HEARTY_STORE_H

#include <stdint.h>
#include <stddef.h>

struct store;
struct db;        /* a connection lent to a callback; valid only during it */
struct db_stmt;   /* a prepared statement of that connection */

struct store_options {
	const char *path;                   /* database file; created if missing */
	const char *const *migrations;      /* NULL-terminated; migration i brings schema to version i+1 */
	int busy_timeout_ms;                /* wait for another process's lock this long */
	int max_batch;                      /* writes per group commit */
	int max_readers;                    /* read connections kept */
};

/* Opens (creating or migrating the schema) and starts the writer. Returns
 * HR_OK with *out set, or an error with err filled. */
int store_open(struct store **out, const struct store_options *opt, char *err, size_t errlen);
/* Finishes queued writes, stops the writer and closes. NULL is a no-op. */
void store_close(struct store *st);

/* A unit of work. Returns HR_OK to keep its changes, anything else to undo them. */
typedef int (*store_fn)(struct db *db, void *arg);

/* Runs fn in the writer inside a transaction and waits until it is durable.
 * Returns fn's result; HR_ERR_STORE when the commit failed (then nothing of
 * fn's stayed); HR_ERR_STOPPED after store_close began. fn must not call
 * store_write or store_read (it would wait for itself). */
int store_write(struct store *st, store_fn fn, void *arg);
/* Runs fn on a read-only connection inside one read transaction (a consistent
 * snapshot). Returns fn's result or HR_ERR_STORE. */
int store_read(struct store *st, store_fn fn, void *arg);

/* Called by the writer after each successful commit (outside any lock the
 * store holds); used to wake long-polling feed readers. One hook per store. */
void store_on_commit(struct store *st, void (*fn)(void *arg), void *arg);

/* True when the database answers a trivial query (readiness). */
bool store_ping(struct store *st);

/* Statements. db_prepare returns NULL when the SQL does not compile (logged). */
struct db_stmt *db_prepare(struct db *db, const char *sql);
void db_bind_int(struct db_stmt *s, int idx, int64_t v);       /* idx from 1 */
void db_bind_text(struct db_stmt *s, int idx, const char *v);  /* NULL binds NULL; copied */
void db_bind_null(struct db_stmt *s, int idx);
/* Steps: DB_ROW when a row is ready, DB_DONE at the end, or an hr_err
 * (HR_ERR_CONFLICT for a constraint violation, HR_ERR_STORE otherwise). */
#define DB_DONE 0
#define DB_ROW  100
int db_step(struct db_stmt *s);
int64_t db_col_int(struct db_stmt *s, int col);
const char *db_col_text(struct db_stmt *s, int col);          /* borrowed until the next step; "" for NULL */
bool db_col_null(struct db_stmt *s, int col);
/* Resets every statement handed out so far in this callback (before a
 * ROLLBACK TO, so no statement is left mid-way). */
void db_release(struct db *db);
/* Runs SQL without results (DDL, several statements). Returns HR_OK or HR_ERR_STORE. */
int db_exec(struct db *db, const char *sql);
/* Runs one statement without results, prepared once per connection like
 * db_prepare (pass a literal): savepoints on hot paths. */
int db_run(struct db *db, const char *sql);
/* Rows changed by the last statement; rowid of the last insert. */
int db_changes(struct db *db);
int64_t db_last_id(struct db *db);

#endif

/*
 * api.h - the small helpers every handler uses: ids from paths and queries,
 * list paging, validated bodies, and mapping store errors to answers.
 *
 * Each `api_` check returns true when the input is good; when it returns
 * false it has already filled the response with a 400 naming the parameter,
 * and the handler simply returns.
 */
#ifndef HEARTY_API_H
#define HEARTY_API_H

#include <jansson.h>
#include "server.h"
#include "store.h"
#include "validate.h"

/* {name} path segment as an id (1..2^53 - 1). */
bool api_path_id(struct request *req, struct response *res, const char *name, int64_t *out);
/* Query integer in [min, max]; def when absent. */
bool api_query_int(struct request *req, struct response *res, const char *name,
		   int64_t min, int64_t max, int64_t def, int64_t *out);
/* Required query id. */
bool api_query_id(struct request *req, struct response *res, const char *name, int64_t *out);
/* Required query customerId (contract charset) into out (>= 65 bytes). */
bool api_query_customer(struct request *req, struct response *res, char *out, size_t outlen);
/* {customerId} path segment, same rules, into out (>= 65 bytes). */
bool api_path_customer(struct request *req, struct response *res, char *out, size_t outlen);
/* One page of a list: the query's cursor and size, and the rows read. */
struct api_page {
	int64_t after, limit;
	json_t *items;
};

/* limit (1..500, default 50) and after (0..2^53 - 1, default 0). */
bool api_list_params(struct request *req, struct response *res, int64_t *after, int64_t *limit);
/* Steps s (bound to return up to limit + 1 rows) and appends row(s) for each.
 * Returns HR_OK or the step's error. For use inside a store_read callback. */
int api_page_collect(struct db_stmt *s, struct api_page *page, json_t *(*row)(struct db_stmt *s));
/* Reads a page with fn (a store_read callback filling page->items) and
 * answers it, or the store error. arg is fn's argument and holds page. */
void api_page_answer(struct response *res, struct store *st, store_fn fn, void *arg,
		     struct api_page *page, const char *id_field);
/* Parses and validates the JSON body; *root is a new reference on success. */
bool api_body(struct request *req, struct response *res, const struct field *fields, size_t n,
	      json_t **root);
/* Answers a list: items (stolen) holds up to limit + 1 rows, the extra one only
 * telling that there is a next page; next is the id of the last row kept. */
void api_list_answer(struct response *res, json_t *items, int64_t limit, const char *id_field);
/* Maps a store-layer failure to an answer: not found 404, conflict 409,
 * anything else 503 (the client did nothing wrong; it may retry). */
void api_store_error(struct response *res, int rc);
/* Sets a JSON string member, or null when s is NULL or empty. */
void api_set_string_or_null(json_t *obj, const char *key, const char *s);

#endif

/* api.c - shared handler helpers. */
#include "hearty.h"
#include "api.h"
#include "config.h"

#include <stdio.h>
#include <string.h>

bool api_path_id(struct request *req, struct response *res, const char *name, int64_t *out)
{
	const char *v = request_param(req, name);
	if(validate_id(v, out))
		return true;
	response_error(res, 400, "invalid_argument", "%s must be an integer id from 1 to 2^53 - 1", name);
	return false;
}

bool api_query_int(struct request *req, struct response *res, const char *name,
		   int64_t min, int64_t max, int64_t def, int64_t *out)
{
	char v[32];
	int got = request_query(req, name, v, sizeof(v));

	if(got == 0) {
		*out = def;
		return true;
	}
	if(got == 1 && v[0] != '-' && parse_int64(v, min, max, out) == 0)
		return true;
	response_error(res, 400, "invalid_argument", "%s must be an integer from %lld to %lld", name,
		       (long long)min, (long long)max);
	return false;
}

bool api_query_id(struct request *req, struct response *res, const char *name, int64_t *out)
{
	char v[32];
	int got = request_query(req, name, v, sizeof(v));

	if(got == 1 && validate_id(v, out))
		return true;
	response_error(res, 400, "invalid_argument", got == 0 ? "%s is required" :
		       "%s must be an integer id from 1 to 2^53 - 1", name);
	return false;
}

bool api_query_customer(struct request *req, struct response *res, char *out, size_t outlen)
{
	int got = request_query(req, "customerId", out, outlen);

	if(got == 1 && check_customer_id(out))
		return true;
	response_error(res, 400, "invalid_argument", got == 0 ? "customerId is required" :
		       "customerId must be 1 to 64 characters of A-Z a-z 0-9 . _ -");
	return false;
}

bool api_path_customer(struct request *req, struct response *res, char *out, size_t outlen)
{
	const char *v = request_param(req, "customerId");

	if(v && strlen(v) < outlen && check_customer_id(v)) {
		memcpy(out, v, strlen(v) + 1);
		return true;
	}
	response_error(res, 400, "invalid_argument",
		       "customerId must be 1 to 64 characters of A-Z a-z 0-9 . _ -");
	return false;
}

bool api_list_params(struct request *req, struct response *res, int64_t *after, int64_t *limit)
{
	return api_query_int(req, res, "limit", 1, HR_LIST_MAX, HR_LIST_DEFAULT, limit) &&
	       api_query_int(req, res, "after", 0, HR_MAX_ID, 0, after);
}

bool api_body(struct request *req, struct response *res, const struct field *fields, size_t n,
	      json_t **root)
{
	char msg[256];
	size_t len;
	const char *body = request_body(req, &len);

	*root = NULL;
	if(validate_parse(body, len, root, msg, sizeof(msg))) {
		response_error(res, 400, len ? "invalid_json" : "invalid_argument", "%s", msg);
		return false;
	}
	if(validate_fields(*root, fields, n, msg, sizeof(msg))) {
		json_decref(*root);
		*root = NULL;
		response_error(res, 400, "invalid_argument", "%s", msg);
		return false;
	}
	return true;
}

int api_page_collect(struct db_stmt *s, struct api_page *page, json_t *(*row)(struct db_stmt *s))
{
	int rc;

	for(rc = db_step(s); rc == DB_ROW; rc = db_step(s))
		if(json_array_append_new(page->items, row(s)))
			return HR_ERR_NOMEM;
	return rc == DB_DONE ? HR_OK : rc;
}

void api_page_answer(struct response *res, struct store *st, store_fn fn, void *arg,
		     struct api_page *page, const char *id_field)
{
	int rc;

	page->items = json_array();
	rc = page->items ? store_read(st, fn, arg) : HR_ERR_NOMEM;
	if(rc) {
		json_decref(page->items);
		api_store_error(res, rc);
		return;
	}
	api_list_answer(res, page->items, page->limit, id_field);
}

void api_list_answer(struct response *res, json_t *items, int64_t limit, const char *id_field)
{
	json_t *next = json_null();
	size_t n = json_array_size(items);

	if((int64_t)n > limit) {
		json_array_remove(items, n - 1);
		next = json_incref(json_object_get(json_array_get(items, n - 2), id_field));
	}
	response_json(res, 200, json_pack("{s:o,s:o}", "items", items, "next", next));
}

void api_store_error(struct response *res, int rc)
{
	switch(rc) {
	case HR_ERR_NOT_FOUND:
		response_error(res, 404, "not_found", "no such resource");
		break;
	case HR_ERR_CONFLICT:
		response_error(res, 409, "conflict", "the resource is in a conflicting state");
		break;
	case HR_ERR_STOPPED:
		response_unavailable(res, 1, "the service is shutting down");
		break;
	default:
		response_unavailable(res, 1, "the store is unavailable (%s); retry later", hr_err_name(rc));
		break;
	}
}

void api_set_string_or_null(json_t *obj, const char *key, const char *s)
{
	json_object_set_new(obj, key, s && *s ? json_string(s) : json_null());
}

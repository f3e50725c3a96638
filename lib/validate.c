/* validate.c - request body validation against field tables. */
#include "hearty.h"
#include "validate.h"
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* An integral real within the exact range as a new integer; NULL otherwise. */
static json_t *exact_integer(json_t *v)
{
	double d;

	if(!json_is_real(v))
		return NULL;
	d = json_real_value(v);
	if(d != floor(d) || d < -(double)HR_MAX_ID || d > (double)HR_MAX_ID)
		return NULL;
	return json_integer((json_int_t)d);
}

/* Turns integral reals back into integers, recursively (jansson limits depth). */
static void normalize_ints(json_t *v)
{
	const char *key;
	json_t *item, *as_int;
	size_t i;
	void *tmp;

	if(json_is_object(v)) {
		json_object_foreach_safe(v, tmp, key, item) {
			as_int = exact_integer(item);
			if(as_int)
				json_object_set_new(v, key, as_int);
			else
				normalize_ints(item);
		}
	} else if(json_is_array(v)) {
		json_array_foreach(v, i, item) {
			as_int = exact_integer(item);
			if(as_int)
				json_array_set_new(v, i, as_int);
			else
				normalize_ints(item);
		}
	}
}

int validate_parse(const char *body, size_t len, json_t **out, char *msg, size_t msglen)
{
	json_error_t jerr;
	json_t *root;

	if(len == 0) {
		snprintf(msg, msglen, "request body is required");
		return HR_ERR_INVALID;
	}
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &jerr);
	if(!root) {
		snprintf(msg, msglen, "body is not valid JSON: %s (line %d, column %d)",
			 jerr.text, jerr.line, jerr.column);
		return HR_ERR_INVALID;
	}
	if(!json_is_object(root)) {
		json_decref(root);
		snprintf(msg, msglen, "body must be a JSON object");
		return HR_ERR_INVALID;
	}
	normalize_ints(root);
	*out = root;
	return HR_OK;
}

/* JSON numbers arrive as reals (or integers from trusted encoders). */
static bool number_as_int(json_t *v, int64_t min, int64_t max, int64_t *out)
{
	double d;

	if(json_is_integer(v)) {
		json_int_t i = json_integer_value(v);
		if(i < min || i > max)
			return false;
		*out = (int64_t)i;
		return true;
	}
	if(!json_is_real(v))
		return false;
	d = json_real_value(v);
	if(!isfinite(d) || d != floor(d) || d < (double)min || d > (double)max)
		return false;
	*out = (int64_t)d;
	return true;
}

static const struct field *field_find(const struct field *fields, size_t n, const char *name)
{
	for(size_t i = 0; i < n; i++)
		if(strcmp(fields[i].name, name) == 0)
			return &fields[i];
	return NULL;
}

static int check_one(json_t *v, const struct field *f, char *msg, size_t msglen)
{
	int64_t iv;
	size_t chars;

	switch(f->type) {
	case FIELD_INT:
		if(!json_is_number(v)) {
			snprintf(msg, msglen, "%s must be an integer", f->name);
			return HR_ERR_INVALID;
		}
		if(!number_as_int(v, f->min, f->max, &iv)) {
			snprintf(msg, msglen, "%s must be an integer from %lld to %lld", f->name,
				 (long long)f->min, (long long)f->max);
			return HR_ERR_INVALID;
		}
		if(f->int_out)
			*f->int_out = iv;
		return HR_OK;
	case FIELD_STRING:
		if(!json_is_string(v)) {
			snprintf(msg, msglen, "%s must be a string", f->name);
			return HR_ERR_INVALID;
		}
		chars = utf8_length(json_string_value(v));
		if((int64_t)chars < f->min || (int64_t)chars > f->max ||
		   (f->check && !f->check(json_string_value(v)))) {
			snprintf(msg, msglen, "%s must be %lld to %lld characters%s", f->name,
				 (long long)f->min, (long long)f->max,
				 f->check == check_customer_id ? " of A-Z a-z 0-9 . _ -" : " without control characters");
			return HR_ERR_INVALID;
		}
		if(f->str_out)
			*f->str_out = json_string_value(v);
		return HR_OK;
	case FIELD_OBJECT:
		if(!json_is_object(v)) {
			snprintf(msg, msglen, "%s must be an object", f->name);
			return HR_ERR_INVALID;
		}
		if(f->obj_out)
			*f->obj_out = v;
		return HR_OK;
	}
	return HR_ERR_INVALID;
}

int validate_fields(json_t *obj, const struct field *fields, size_t n, char *msg, size_t msglen)
{
	const char *key;
	json_t *v;

	json_object_foreach(obj, key, v) {
		if(!field_find(fields, n, key)) {
			snprintf(msg, msglen, "unknown field \"%.64s\"", key);
			return HR_ERR_INVALID;
		}
	}
	return validate_members(obj, fields, n, msg, msglen);
}

int validate_members(json_t *obj, const struct field *fields, size_t n, char *msg, size_t msglen)
{
	json_t *v;
	int rc;

	if(!json_is_object(obj)) {
		snprintf(msg, msglen, "not a JSON object");
		return HR_ERR_INVALID;
	}
	for(size_t i = 0; i < n; i++) {
		v = json_object_get(obj, fields[i].name);
		if(!v || json_is_null(v)) {
			if(fields[i].required) {
				snprintf(msg, msglen, "%s is required", fields[i].name);
				return HR_ERR_INVALID;
			}
			continue;
		}
		rc = check_one(v, &fields[i], msg, msglen);
		if(rc)
			return rc;
	}
	return HR_OK;
}

bool validate_int_member(json_t *obj, const char *name, int64_t min, int64_t max, int64_t *out)
{
	json_t *v = json_object_get(obj, name);
	return v && number_as_int(v, min, max, out);
}

bool validate_id(const char *text, int64_t *out)
{
	/* Leading zeros and signs are not ids. */
	if(!text || text[0] < '1' || text[0] > '9')
		return false;
	return parse_int64(text, 1, HR_MAX_ID, out) == 0;
}

bool check_customer_id(const char *s)
{
	size_t n = strlen(s);

	if(n == 0 || n > 64)
		return false;
	for(; *s; s++) {
		char c = *s;
		if(!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		     c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

bool check_printable(const char *s)
{
	for(; *s; s++)
		if((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

size_t utf8_length(const char *s)
{
	size_t n = 0;
	for(; *s; s++)
		if(((unsigned char)*s & 0xC0) != 0x80)
			n++;
	return n;
}

/*
 * validate.h - strict validation of JSON request bodies and ids.
 *
 * A body is checked against a table of fields: unknown members, missing
 * required members, wrong types and out-of-range values are all rejected with a
 * message that names the field. Numbers are decoded as doubles first so a huge
 * literal (1e30, 99999999999999999999) is "out of range" rather than a parser
 * error; an integer field must hold an integral value within its bounds, and
 * bounds stay below 2^53, where doubles are still exact. Integral reals are
 * turned back into integers after parsing, so a value stored or passed on
 * (a corrected dead letter) keeps its integer form.
 */
#ifndef HEARTY_VALIDATE_H
#define HEARTY_VALIDATE_H

#include <jansson.h>
#include <stdint.h>

enum field_type { FIELD_INT, FIELD_STRING, FIELD_OBJECT };

/* Checks a string value; returns true when acceptable. */
typedef bool (*field_check)(const char *s);

struct field {
	const char *name;
	enum field_type type;
	bool required;
	int64_t min, max;       /* FIELD_INT: value bounds; FIELD_STRING: length in characters */
	field_check check;      /* FIELD_STRING: optional extra rule */
	int64_t *int_out;       /* FIELD_INT: where the value goes (untouched if absent) */
	const char **str_out;   /* FIELD_STRING: borrowed from the json_t, valid while it lives */
	json_t **obj_out;       /* FIELD_OBJECT: borrowed */
};

/* Parses body (len bytes, not NUL-terminated) into a JSON object. Returns
 * HR_OK with *out a new reference, or HR_ERR_INVALID with msg set when the body is
 * empty, not JSON, or not an object. */
int validate_parse(const char *body, size_t len, json_t **out, char *msg, size_t msglen);

/* Checks obj against fields[0..n). Returns HR_OK, or HR_ERR_INVALID with a message
 * naming the first bad field. Fills the *_out pointers of present fields. */
int validate_fields(json_t *obj, const struct field *fields, size_t n, char *msg, size_t msglen);

/* Like validate_fields but ignores members not in the table: for events,
 * whose producers may add fields (a tolerant reader). */
int validate_members(json_t *obj, const struct field *fields, size_t n, char *msg, size_t msglen);

/* Reads an integer member of an object that came from a trusted or already
 * validated source (events): true when present, integral and in [min, max]. */
bool validate_int_member(json_t *obj, const char *name, int64_t min, int64_t max, int64_t *out);

/* Parses a decimal id ("1".."2^53 - 1") from a path or query. */
bool validate_id(const char *text, int64_t *out);

/* String rules of the contract. */
bool check_customer_id(const char *s);   /* [A-Za-z0-9._-], 1..64 */
bool check_printable(const char *s);     /* no control characters */
/* Counts UTF-8 characters (jansson has already rejected invalid UTF-8). */
size_t utf8_length(const char *s);

#endif

/* test_validate.c - body parsing, field tables, ids and the string rules. */
#include "hearty.h"
#include "validate.h"
#include "check.h"

/* ---- validate_parse ------------------------------------------------------ */

struct parse_case {
	const char *body;
	size_t len;          /* 0: strlen(body) */
	int rc;
	const char *msg;     /* expected substring of the message */
};

static void test_parse(void)
{
	static const struct parse_case cases[] = {
		{ "", 0, HR_ERR_INVALID, "request body is required" },
		{ "not json", 0, HR_ERR_INVALID, "body is not valid JSON" },
		{ "{\"a\":1", 0, HR_ERR_INVALID, "body is not valid JSON" },
		{ "{\"a\":1} x", 0, HR_ERR_INVALID, "body is not valid JSON" },
		{ "[1,2]", 0, HR_ERR_INVALID, "body must be a JSON object" },
		/* scalars: the parser itself refuses them */
		{ "null", 0, HR_ERR_INVALID, "JSON" },
		{ "\"s\"", 0, HR_ERR_INVALID, "JSON" },
		{ "12", 0, HR_ERR_INVALID, "JSON" },
		{ "{\"a\":1,\"a\":2}", 0, HR_ERR_INVALID, "duplicate" },
		{ "{\"a\":\"x\\u0000y\"}", 0, HR_ERR_INVALID, "body is not valid JSON" },
		{ "{\"a\":\"\xff\"}", 0, HR_ERR_INVALID, "body is not valid JSON" },
		{ "{}", 0, HR_OK, NULL },
		{ " {\"a\":{\"b\":[1]}} \n", 0, HR_OK, NULL },
		/* len bounds the body: it is not NUL-terminated */
		{ "{}garbage", 2, HR_OK, NULL },
		{ "{\"a\":1}", 4, HR_ERR_INVALID, "body is not valid JSON" },
	};

	for(size_t i = 0; i < HR_ARRAY_LEN(cases); i++) {
		const struct parse_case *c = &cases[i];
		char msg[256] = "";
		json_t *obj = NULL;
		int rc = validate_parse(c->body, c->len ? c->len : strlen(c->body), &obj, msg, sizeof(msg));
		if(!CHECK_INT(rc, c->rc))
			printf("   body %s\n", c->body);
		if(c->rc == HR_OK) {
			CHECK(json_is_object(obj));
		} else {
			CHECK(obj == NULL);
			CHECK_CONTAINS(msg, c->msg);
		}
		json_decref(obj);
	}
}

/* ---- validate_fields ----------------------------------------------------- */

/* Where a table writes what it accepted. */
struct out {
	int64_t qty, order_id;
	const char *customer, *item;
	json_t *meta;
};

/* customerId (contract charset), item (1..3 characters, printable), qty
 * 1..1000, optional orderId 1..2^53 - 1, optional meta object. */
static void table(struct field f[5], struct out *o)
{
	const struct field t[5] = {
		{ "customerId", FIELD_STRING, true, 1, 64, check_customer_id, NULL, &o->customer, NULL },
		{ "item", FIELD_STRING, true, 1, 3, check_printable, NULL, &o->item, NULL },
		{ "qty", FIELD_INT, true, 1, 1000, NULL, &o->qty, NULL, NULL },
		{ "orderId", FIELD_INT, false, 1, HR_MAX_ID, NULL, &o->order_id, NULL, NULL },
		{ "meta", FIELD_OBJECT, false, 0, 0, NULL, NULL, NULL, &o->meta },
	};
	memcpy(f, t, sizeof(t));
}

/* Parses body as a request would be, then checks it against the table. */
static int run_fields(const char *body, struct out *o, char *msg, size_t msglen, json_t **keep)
{
	struct field f[5];
	json_t *obj = NULL;
	int rc;

	memset(o, 0, sizeof(*o));
	o->qty = o->order_id = -7;
	table(f, o);
	rc = validate_parse(body, strlen(body), &obj, msg, msglen);
	if(rc == HR_OK)
		rc = validate_fields(obj, f, HR_ARRAY_LEN(f), msg, msglen);
	*keep = obj;
	return rc;
}

struct field_case {
	const char *body;
	const char *msg;     /* NULL: accepted */
};

#define OKBASE "\"customerId\":\"c-1\",\"item\":\"abc\""

static void test_fields_table(void)
{
	static const struct field_case cases[] = {
		{ "{" OKBASE ",\"qty\":1}", NULL },
		{ "{" OKBASE ",\"qty\":1000}", NULL },                 /* bounds inclusive */
		{ "{" OKBASE ",\"qty\":1.0}", NULL },                  /* an integral real is an integer */
		{ "{" OKBASE ",\"qty\":1,\"extra\":1}", "unknown field \"extra\"" },
		{ "{\"customerId\":\"c\",\"qty\":1}", "item is required" },
		{ "{" OKBASE "}", "qty is required" },
		{ "{" OKBASE ",\"qty\":null}", "qty is required" },
		{ "{" OKBASE ",\"qty\":\"1\"}", "qty must be an integer" },
		{ "{" OKBASE ",\"qty\":true}", "qty must be an integer" },
		{ "{" OKBASE ",\"qty\":[1]}", "qty must be an integer" },
		{ "{" OKBASE ",\"qty\":1.5}", "qty must be an integer from 1 to 1000" },
		{ "{" OKBASE ",\"qty\":1e30}", "qty must be an integer from 1 to 1000" },
		{ "{" OKBASE ",\"qty\":-1e30}", "qty must be an integer from 1 to 1000" },
		{ "{" OKBASE ",\"qty\":99999999999999999999}", "qty must be an integer from 1 to 1000" },
		{ "{" OKBASE ",\"qty\":-1}", "qty must be an integer from 1 to 1000" },
		{ "{" OKBASE ",\"qty\":0}", "qty must be an integer from 1 to 1000" },
		{ "{" OKBASE ",\"qty\":1001}", "qty must be an integer from 1 to 1000" },
		{ "{" OKBASE ",\"qty\":1000.5}", "qty must be an integer from 1 to 1000" },
		{ "{" OKBASE ",\"qty\":1,\"orderId\":9007199254740991}", NULL },
		{ "{" OKBASE ",\"qty\":1,\"orderId\":9007199254740992}", "orderId must be an integer from 1 to 9007199254740991" },
		{ "{" OKBASE ",\"qty\":1,\"orderId\":9007199254740994}", "orderId must be an integer from 1 to 9007199254740991" },
		{ "{" OKBASE ",\"qty\":1,\"orderId\":0}", "orderId must be an integer from 1" },
		{ "{" OKBASE ",\"qty\":1,\"orderId\":null}", NULL },    /* optional: null is absent */
		{ "{\"customerId\":\"c\",\"item\":7,\"qty\":1}", "item must be a string" },
		{ "{\"customerId\":\"c\",\"item\":\"\",\"qty\":1}", "item must be 1 to 3 characters" },
		{ "{\"customerId\":\"c\",\"item\":\"abcd\",\"qty\":1}", "item must be 1 to 3 characters" },
		/* lengths count UTF-8 characters: three Korean syllables are 9 bytes */
		{ "{\"customerId\":\"c\",\"item\":\"가나다\",\"qty\":1}", NULL },
		{ "{\"customerId\":\"c\",\"item\":\"가나다라\",\"qty\":1}", "item must be 1 to 3 characters" },
		{ "{\"customerId\":\"c\",\"item\":\"é😀x\",\"qty\":1}", NULL },
		/* control characters */
		{ "{\"customerId\":\"c\",\"item\":\"a\\tb\",\"qty\":1}", "without control characters" },
		{ "{\"customerId\":\"c\",\"item\":\"a\\nb\",\"qty\":1}", "without control characters" },
		{ "{\"customerId\":\"c\",\"item\":\"\\u001f\",\"qty\":1}", "without control characters" },
		{ "{\"customerId\":\"c\",\"item\":\"a\\u007f\",\"qty\":1}", "without control characters" },
		/* customer id charset */
		{ "{\"customerId\":\"aZ0._-\",\"item\":\"i\",\"qty\":1}", NULL },
		{ "{\"customerId\":\"a b\",\"item\":\"i\",\"qty\":1}", "customerId must be 1 to 64 characters of A-Z a-z 0-9 . _ -" },
		{ "{\"customerId\":\"a/b\",\"item\":\"i\",\"qty\":1}", "customerId must be" },
		{ "{\"customerId\":\"가\",\"item\":\"i\",\"qty\":1}", "customerId must be" },
		{ "{\"customerId\":\"\",\"item\":\"i\",\"qty\":1}", "customerId must be" },
		{ "{\"customerId\":\"a\\u0000\",\"item\":\"i\",\"qty\":1}", "not valid JSON" },
		{ "{\"customerId\":[],\"item\":\"i\",\"qty\":1}", "customerId must be a string" },
		{ "{" OKBASE ",\"qty\":1,\"meta\":[]}", "meta must be an object" },
		{ "{" OKBASE ",\"qty\":1,\"meta\":\"x\"}", "meta must be an object" },
		{ "{" OKBASE ",\"qty\":1,\"meta\":{\"free\":[1,2]}}", NULL },
	};

	for(size_t i = 0; i < HR_ARRAY_LEN(cases); i++) {
		const struct field_case *c = &cases[i];
		char msg[256] = "";
		struct out o;
		json_t *obj;
		int rc = run_fields(c->body, &o, msg, sizeof(msg), &obj);
		bool ok = c->msg ? CHECK_INT(rc, HR_ERR_INVALID) && CHECK_CONTAINS(msg, c->msg)
				 : CHECK_INT(rc, HR_OK);
		if(!ok)
			printf("   body %s -> \"%s\"\n", c->body, msg);
		json_decref(obj);
	}
}

static void test_fields_outputs(void)
{
	char msg[256] = "";
	struct out o;
	json_t *obj;
	char long_id[80];

	/* Accepted values land in the out pointers; borrowed strings live with the object. */
	CHECK_INT(run_fields("{\"customerId\":\"c-1\",\"item\":\"가나다\",\"qty\":1000,"
			     "\"orderId\":9007199254740991,\"meta\":{\"k\":1}}", &o, msg, sizeof(msg), &obj), HR_OK);
	CHECK_STR(o.customer, "c-1");
	CHECK_STR(o.item, "가나다");
	CHECK_INT(o.qty, 1000);
	CHECK_INT(o.order_id, 9007199254740991LL);
	CHECK(o.meta == json_object_get(obj, "meta"));
	json_decref(obj);

	/* An absent optional field leaves its out untouched. */
	CHECK_INT(run_fields("{\"customerId\":\"c\",\"item\":\"i\",\"qty\":3}", &o, msg, sizeof(msg), &obj), HR_OK);
	CHECK_INT(o.qty, 3);
	CHECK_INT(o.order_id, -7);
	CHECK(o.meta == NULL);
	json_decref(obj);

	/* customerId: 64 characters pass, 65 do not. */
	char body[256];
	memset(long_id, 'a', 64);
	long_id[64] = '\0';
	snprintf(body, sizeof(body), "{\"customerId\":\"%s\",\"item\":\"i\",\"qty\":1}", long_id);
	CHECK_INT(run_fields(body, &o, msg, sizeof(msg), &obj), HR_OK);
	json_decref(obj);
	snprintf(body, sizeof(body), "{\"customerId\":\"%sb\",\"item\":\"i\",\"qty\":1}", long_id);
	CHECK_INT(run_fields(body, &o, msg, sizeof(msg), &obj), HR_ERR_INVALID);
	CHECK_CONTAINS(msg, "customerId");
	json_decref(obj);

	/* The first bad field in table order is the one reported. */
	CHECK_INT(run_fields("{\"customerId\":\"a b\",\"item\":\"\",\"qty\":0}", &o, msg, sizeof(msg), &obj),
		  HR_ERR_INVALID);
	CHECK_CONTAINS(msg, "customerId");
	json_decref(obj);

	/* Integers from a trusted encoder (not decoded as reals) follow the same bounds. */
	struct field f[5];
	table(f, &o);
	obj = json_pack("{s:s,s:s,s:I}", "customerId", "c", "item", "i", "qty", (json_int_t)1001);
	CHECK_INT(validate_fields(obj, f, 5, msg, sizeof(msg)), HR_ERR_INVALID);
	CHECK_CONTAINS(msg, "qty must be an integer from 1 to 1000");
	json_object_set_new(obj, "qty", json_integer(1000));
	CHECK_INT(validate_fields(obj, f, 5, msg, sizeof(msg)), HR_OK);
	CHECK_INT(o.qty, 1000);
	json_decref(obj);
}

static void test_fields_id_past_2_53(void)
{
	char msg[256] = "";
	struct out o;
	json_t *obj;
	int rc;

	/* 9007199254740993 is past the contract's 1..2^53 - 1; decoded as a
	 * double it rounds to 9007199254740992, still out of bounds. */
	rc = run_fields("{" OKBASE ",\"qty\":1,\"orderId\":9007199254740993}", &o, msg, sizeof(msg), &obj);
	CHECK_INT(rc, HR_ERR_INVALID);
	if(rc == HR_OK)
		printf("   accepted as orderId %lld\n", (long long)o.order_id);
	json_decref(obj);
}

static void test_members(void)
{
	int64_t qty = 0;
	const char *name = NULL;
	const struct field f[] = {
		{ "qty", FIELD_INT, true, 1, 10, NULL, &qty, NULL, NULL },
		{ "name", FIELD_STRING, false, 1, 5, NULL, NULL, &name, NULL },
	};
	char msg[128] = "";
	json_t *obj = json_loads("{\"qty\":5,\"zzz\":[1],\"name\":\"n\"}", JSON_DECODE_INT_AS_REAL, NULL);

	/* A tolerant reader: unknown members are fine, known ones strict. */
	CHECK_INT(validate_members(obj, f, 2, msg, sizeof(msg)), HR_OK);
	CHECK_INT(qty, 5);
	CHECK_STR(name, "n");
	CHECK_INT(validate_fields(obj, f, 2, msg, sizeof(msg)), HR_ERR_INVALID);
	CHECK_CONTAINS(msg, "unknown field \"zzz\"");
	json_object_set_new(obj, "qty", json_real(11));
	CHECK_INT(validate_members(obj, f, 2, msg, sizeof(msg)), HR_ERR_INVALID);
	CHECK_CONTAINS(msg, "qty must be an integer from 1 to 10");
	json_object_del(obj, "qty");
	CHECK_INT(validate_members(obj, f, 2, msg, sizeof(msg)), HR_ERR_INVALID);
	CHECK_CONTAINS(msg, "qty is required");
	json_decref(obj);

	obj = json_array();
	CHECK_INT(validate_members(obj, f, 2, msg, sizeof(msg)), HR_ERR_INVALID);
	CHECK_CONTAINS(msg, "not a JSON object");
	json_decref(obj);
}

static void test_int_member(void)
{
	json_t *obj = json_loads("{\"a\":7,\"b\":2.5,\"c\":\"7\",\"d\":1e300,\"e\":-3,\"f\":9007199254740991}",
				 JSON_DECODE_INT_AS_REAL, NULL);
	int64_t v = -1;

	CHECK(validate_int_member(obj, "a", 1, 10, &v));
	CHECK_INT(v, 7);
	CHECK(!validate_int_member(obj, "a", 8, 10, &v));
	CHECK(!validate_int_member(obj, "b", 0, 10, &v));
	CHECK(!validate_int_member(obj, "c", 0, 10, &v));
	CHECK(!validate_int_member(obj, "d", 0, HR_MAX_ID, &v));
	CHECK(!validate_int_member(obj, "e", 0, 10, &v));
	CHECK(validate_int_member(obj, "e", -5, 0, &v));
	CHECK_INT(v, -3);
	CHECK(validate_int_member(obj, "f", 1, HR_MAX_ID, &v));
	CHECK_INT(v, HR_MAX_ID);
	CHECK(!validate_int_member(obj, "missing", 0, 10, &v));
	json_decref(obj);
}

/* ---- ids and string rules ------------------------------------------------ */

struct id_case {
	const char *text;
	bool ok;
	int64_t want;
};

static void test_id(void)
{
	static const struct id_case cases[] = {
		{ "1", true, 1 },
		{ "42", true, 42 },
		{ "9007199254740991", true, 9007199254740991LL },
		{ "9007199254740992", false, 0 },
		{ "0", false, 0 },
		{ "01", false, 0 },
		{ "-1", false, 0 },
		{ "+1", false, 0 },
		{ " 1", false, 0 },
		{ "1 ", false, 0 },
		{ "abc", false, 0 },
		{ "1a", false, 0 },
		{ "", false, 0 },
		{ "1.0", false, 0 },
		{ "9007199254740993", false, 0 },
		{ "99999999999999999999", false, 0 },
	};

	for(size_t i = 0; i < HR_ARRAY_LEN(cases); i++) {
		int64_t out = -1;
		bool ok = validate_id(cases[i].text, &out);
		if(!CHECK_INT(ok, cases[i].ok))
			printf("   id \"%s\"\n", cases[i].text);
		if(cases[i].ok)
			CHECK_INT(out, cases[i].want);
	}
	CHECK(!validate_id(NULL, &(int64_t){ 0 }));
}

static void test_string_rules(void)
{
	CHECK_INT(utf8_length(""), 0);
	CHECK_INT(utf8_length("abc"), 3);
	CHECK_INT(utf8_length("가나다"), 3);
	CHECK_INT(utf8_length("é"), 1);
	CHECK_INT(utf8_length("😀a"), 2);

	CHECK(check_customer_id("aZ09._-"));
	CHECK(!check_customer_id("a b"));
	CHECK(!check_customer_id("a+b"));
	CHECK(!check_customer_id("é"));
	CHECK(!check_customer_id("a\nb"));

	CHECK(check_printable("hello, 세계!"));
	CHECK(check_printable(""));
	CHECK(!check_printable("a\tb"));
	CHECK(!check_printable("\x01"));
	CHECK(!check_printable("\x1f"));
	CHECK(!check_printable("del\x7f"));
}

static void test_customer_id_length(void)
{
	char id65[66];

	memset(id65, 'a', 65);
	id65[65] = '\0';
	CHECK(!check_customer_id(""));
	CHECK(!check_customer_id(id65));
}

int main(void)
{
	RUN(test_parse);
	RUN(test_fields_table);
	RUN(test_fields_outputs);
	RUN(test_fields_id_past_2_53);
	RUN(test_members);
	RUN(test_int_member);
	RUN(test_id);
	RUN(test_string_rules);
	RUN(test_customer_id_length);
	return check_done();
}

/* test_events.c - event data built by producers and parsed by consumers. */
#include "hearty.h"
#include "events.h"
#include "check.h"

/* Serialises data and reads it back as a consumer would (the feed's JSON text). */
static json_t *through_text(json_t *data, size_t flags)
{
	char *text = json_dumps(data, JSON_COMPACT);
	json_t *back = text ? json_loads(text, flags, NULL) : NULL;
	free(text);
	return back;
}

static void test_pay_round_trip(void)
{
	static const size_t flags[] = { 0, JSON_DECODE_INT_AS_REAL };
	const struct pay_event in = { .pay_id = HR_MAX_ID, .order_id = 7, .amount = HR_MAX_AMOUNT,
				      .customer_id = "cust-1.A_z" };

	for(size_t i = 0; i < HR_ARRAY_LEN(flags); i++) {
		json_t *data = pay_event_data(&in);
		json_t *back = through_text(data, flags[i]);
		struct pay_event out = { 0 };
		char reason[128] = "";

		CHECK(json_is_object(data));
		CHECK_INT(json_object_size(data), 4);
		CHECK_INT(json_integer_value(json_object_get(data, "payId")), HR_MAX_ID);
		CHECK_INT(pay_event_parse(back, &out, reason, sizeof(reason)), HR_OK);
		CHECK_INT(out.pay_id, HR_MAX_ID);
		CHECK_INT(out.order_id, 7);
		CHECK_INT(out.amount, HR_MAX_AMOUNT);
		CHECK_STR(out.customer_id, "cust-1.A_z");
		CHECK_STR(reason, "");
		json_decref(data);
		json_decref(back);
	}
}

static void test_mileage_round_trip(void)
{
	const struct mileage_event in = { .pay_id = 3, .points = 0, .customer_id = "c" };
	json_t *data = mileage_event_data(&in);
	json_t *back = through_text(data, JSON_DECODE_INT_AS_REAL);
	struct mileage_event out = { 0 };
	char reason[128] = "";

	CHECK_INT(mileage_event_parse(back, &out, reason, sizeof(reason)), HR_OK);
	CHECK_INT(out.pay_id, 3);
	CHECK_INT(out.points, 0);          /* zero points is a valid accrual */
	CHECK_STR(out.customer_id, "c");
	json_decref(data);
	json_decref(back);
}

struct reject_case {
	const char *data;
	const char *reason;   /* NULL: accepted */
};

static void test_pay_parse_rejects(void)
{
	static const struct reject_case cases[] = {
		{ "{\"payId\":1,\"orderId\":2,\"customerId\":\"c\",\"amount\":3}", NULL },
		/* a tolerant reader: members it does not know are ignored */
		{ "{\"payId\":1,\"orderId\":2,\"customerId\":\"c\",\"amount\":3,\"v\":2}", NULL },
		{ "{\"orderId\":2,\"customerId\":\"c\",\"amount\":3}", "payId is required" },
		{ "{\"payId\":1,\"customerId\":\"c\",\"amount\":3}", "orderId is required" },
		{ "{\"payId\":1,\"orderId\":2,\"amount\":3}", "customerId is required" },
		{ "{\"payId\":1,\"orderId\":2,\"customerId\":\"c\"}", "amount is required" },
		{ "{\"payId\":null,\"orderId\":2,\"customerId\":\"c\",\"amount\":3}", "payId is required" },
		{ "{\"payId\":\"1\",\"orderId\":2,\"customerId\":\"c\",\"amount\":3}", "payId must be an integer" },
		{ "{\"payId\":0,\"orderId\":2,\"customerId\":\"c\",\"amount\":3}", "payId must be an integer from 1" },
		{ "{\"payId\":1.5,\"orderId\":2,\"customerId\":\"c\",\"amount\":3}", "payId must be an integer from 1" },
		{ "{\"payId\":1,\"orderId\":2,\"customerId\":\"c\",\"amount\":0}", "amount must be an integer from 1 to 1000000000000" },
		{ "{\"payId\":1,\"orderId\":2,\"customerId\":\"c\",\"amount\":1000000000001}", "amount must be an integer from 1 to 1000000000000" },
		{ "{\"payId\":1,\"orderId\":2,\"customerId\":\"bad id\",\"amount\":3}", "customerId must be" },
		{ "{\"payId\":1,\"orderId\":2,\"customerId\":\"\",\"amount\":3}", "customerId must be" },
		{ "{\"payId\":1,\"orderId\":2,\"customerId\":5,\"amount\":3}", "customerId must be a string" },
		{ "[1]", "not a JSON object" },
	};

	for(size_t i = 0; i < HR_ARRAY_LEN(cases); i++) {
		json_t *data = json_loads(cases[i].data, 0, NULL);
		struct pay_event out = { 0 };
		char reason[160] = "";
		int rc = pay_event_parse(data, &out, reason, sizeof(reason));
		bool ok = cases[i].reason ? CHECK_INT(rc, HR_ERR_REJECTED) && CHECK_CONTAINS(reason, cases[i].reason)
					  : CHECK_INT(rc, HR_OK);
		if(!ok)
			printf("   data %s -> \"%s\"\n", cases[i].data, reason);
		json_decref(data);
	}
}

static void test_mileage_parse_rejects(void)
{
	static const struct reject_case cases[] = {
		{ "{\"payId\":1,\"customerId\":\"c\",\"points\":5}", NULL },
		{ "{\"payId\":1,\"customerId\":\"c\",\"points\":-1}", "points must be an integer from 0" },
		{ "{\"payId\":1,\"customerId\":\"c\"}", "points is required" },
		{ "{\"customerId\":\"c\",\"points\":1}", "payId is required" },
		{ "{\"payId\":1,\"customerId\":\"c c\",\"points\":1}", "customerId must be" },
	};

	for(size_t i = 0; i < HR_ARRAY_LEN(cases); i++) {
		json_t *data = json_loads(cases[i].data, 0, NULL);
		struct mileage_event out = { 0 };
		char reason[160] = "";
		int rc = mileage_event_parse(data, &out, reason, sizeof(reason));
		bool ok = cases[i].reason ? CHECK_INT(rc, HR_ERR_REJECTED) && CHECK_CONTAINS(reason, cases[i].reason)
					  : CHECK_INT(rc, HR_OK);
		if(!ok)
			printf("   data %s -> \"%s\"\n", cases[i].data, reason);
		json_decref(data);
	}
}

int main(void)
{
	RUN(test_pay_round_trip);
	RUN(test_mileage_round_trip);
	RUN(test_pay_parse_rejects);
	RUN(test_mileage_parse_rejects);
	return check_done();
}

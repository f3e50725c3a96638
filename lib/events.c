/* events.c - building and parsing event data. */
#include "hearty.h"
#include "events.h"
#include "validate.h"

#include <stdio.h>

json_t *pay_event_data(const struct pay_event *ev)
{
	return json_pack("{s:I,s:I,s:s,s:I}", "payId", (json_int_t)ev->pay_id,
			 "orderId", (json_int_t)ev->order_id, "customerId", ev->customer_id,
			 "amount", (json_int_t)ev->amount);
}

json_t *mileage_event_data(const struct mileage_event *ev)
{
	return json_pack("{s:I,s:s,s:I}", "payId", (json_int_t)ev->pay_id,
			 "customerId", ev->customer_id, "points", (json_int_t)ev->points);
}

int pay_event_parse(json_t *data, struct pay_event *out, char *reason, size_t rlen)
{
	const struct field fields[] = {
		{ "payId", FIELD_INT, true, 1, HR_MAX_ID, NULL, &out->pay_id, NULL, NULL },
		{ "orderId", FIELD_INT, true, 1, HR_MAX_ID, NULL, &out->order_id, NULL, NULL },
		{ "customerId", FIELD_STRING, true, 1, 64, check_customer_id, NULL, &out->customer_id, NULL },
		{ "amount", FIELD_INT, true, 1, HR_MAX_AMOUNT, NULL, &out->amount, NULL, NULL },
	};
	return validate_members(data, fields, HR_ARRAY_LEN(fields), reason, rlen) ? HR_ERR_REJECTED : HR_OK;
}

int mileage_event_parse(json_t *data, struct mileage_event *out, char *reason, size_t rlen)
{
	const struct field fields[] = {
		{ "payId", FIELD_INT, true, 1, HR_MAX_ID, NULL, &out->pay_id, NULL, NULL },
		{ "customerId", FIELD_STRING, true, 1, 64, check_customer_id, NULL, &out->customer_id, NULL },
		{ "points", FIELD_INT, true, 0, HR_MAX_AMOUNT, NULL, &out->points, NULL, NULL },
	};
	return validate_members(data, fields, HR_ARRAY_LEN(fields), reason, rlen) ? HR_ERR_REJECTED : HR_OK;
}

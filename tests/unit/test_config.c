/* test_config.c - parse_int64, config_int, config_str and config_url. */
#include "hearty.h"
#include "config.h"
#include "check.h"

#include <stdint.h>

#define VAR "HEARTY_UNIT_CONFIG_VAR"

struct int_case {
	const char *text;
	int64_t min, max;
	bool ok;
	int64_t want;
};

static void test_parse_int64(void)
{
	static const struct int_case cases[] = {
		{ "0", INT64_MIN, INT64_MAX, true, 0 },
		{ "-5", INT64_MIN, INT64_MAX, true, -5 },
		{ "42", 0, 100, true, 42 },
		{ "9223372036854775807", INT64_MIN, INT64_MAX, true, INT64_MAX },
		{ "-9223372036854775808", INT64_MIN, INT64_MAX, true, INT64_MIN },
		{ "007", 0, 100, true, 7 },
		{ "100", 0, 100, true, 100 },      /* bounds are inclusive */
		{ "0", 0, 100, true, 0 },
		{ "", INT64_MIN, INT64_MAX, false, 0 },
		{ " 1", INT64_MIN, INT64_MAX, false, 0 },
		{ "1 ", INT64_MIN, INT64_MAX, false, 0 },
		{ "+1", INT64_MIN, INT64_MAX, false, 0 },
		{ "-", INT64_MIN, INT64_MAX, false, 0 },
		{ "--1", INT64_MIN, INT64_MAX, false, 0 },
		{ "-+1", INT64_MIN, INT64_MAX, false, 0 },
		{ "- 1", INT64_MIN, INT64_MAX, false, 0 },
		{ "1x", INT64_MIN, INT64_MAX, false, 0 },
		{ "0x10", INT64_MIN, INT64_MAX, false, 0 },
		{ "1.0", INT64_MIN, INT64_MAX, false, 0 },
		{ "1e3", INT64_MIN, INT64_MAX, false, 0 },
		{ "abc", INT64_MIN, INT64_MAX, false, 0 },
		{ "99999999999999999999", INT64_MIN, INT64_MAX, false, 0 },
		{ "9223372036854775808", INT64_MIN, INT64_MAX, false, 0 },
		{ "-9223372036854775809", INT64_MIN, INT64_MAX, false, 0 },
		{ "123456789012345678901234", INT64_MIN, INT64_MAX, false, 0 },
		{ "101", 0, 100, false, 0 },       /* out of range */
		{ "-1", 0, 100, false, 0 },
		{ "5", 10, 20, false, 0 },
	};

	for(size_t i = 0; i < HR_ARRAY_LEN(cases); i++) {
		int64_t out = 12345;
		int rc = parse_int64(cases[i].text, cases[i].min, cases[i].max, &out);
		if(!CHECK_INT(rc, cases[i].ok ? 0 : -1))
			printf("   input \"%s\"\n", cases[i].text);
		if(cases[i].ok)
			CHECK_INT(out, cases[i].want);
		else if(!CHECK_INT(out, 12345))   /* a rejected parse leaves *out alone */
			printf("   input \"%s\"\n", cases[i].text);
	}
	CHECK_INT(parse_int64(NULL, 0, 1, &(int64_t){ 0 }), -1);
}

static void test_config_int(void)
{
	int64_t out = -1;
	char err[256] = "";

	unsetenv(VAR);
	CHECK_INT(config_int(VAR, 17, 1, 100, &out, err, sizeof(err)), 0);
	CHECK_INT(out, 17);

	setenv(VAR, "", 1);                       /* empty counts as unset */
	out = -1;
	CHECK_INT(config_int(VAR, 18, 1, 100, &out, err, sizeof(err)), 0);
	CHECK_INT(out, 18);

	setenv(VAR, "64", 1);
	CHECK_INT(config_int(VAR, 18, 1, 100, &out, err, sizeof(err)), 0);
	CHECK_INT(out, 64);

	setenv(VAR, "100", 1);
	CHECK_INT(config_int(VAR, 18, 1, 100, &out, err, sizeof(err)), 0);
	CHECK_INT(out, 100);

	static const char *const bad[] = { "101", "0", "abc", "12ms", " 5", "+5", "99999999999999999999" };
	for(size_t i = 0; i < HR_ARRAY_LEN(bad); i++) {
		err[0] = '\0';
		out = -1;
		setenv(VAR, bad[i], 1);
		CHECK_INT(config_int(VAR, 18, 1, 100, &out, err, sizeof(err)), -1);
		CHECK_CONTAINS(err, VAR);              /* the message names the variable */
		CHECK_CONTAINS(err, "1 to 100");
	}
	setenv(VAR, "abc", 1);
	config_int(VAR, 18, 1, 100, &out, err, sizeof(err));
	CHECK_STR(err, VAR "=\"abc\" must be an integer from 1 to 100");

	/* A small error buffer is truncated, not overrun. */
	char small[8];
	memset(small, 'z', sizeof(small));
	CHECK_INT(config_int(VAR, 18, 1, 100, &out, small, sizeof(small)), -1);
	CHECK_INT(strlen(small), sizeof(small) - 1);
	unsetenv(VAR);
}

static void test_config_str(void)
{
	unsetenv(VAR);
	CHECK_STR(config_str(VAR, "dflt"), "dflt");
	CHECK(config_str(VAR, NULL) == NULL);
	setenv(VAR, "", 1);
	CHECK_STR(config_str(VAR, "dflt"), "dflt");
	setenv(VAR, "value", 1);
	CHECK_STR(config_str(VAR, "dflt"), "value");
	unsetenv(VAR);
}

struct url_case {
	const char *value;   /* NULL: unset, the default applies */
	int rc;
	const char *want;
};

static void test_config_url(void)
{
	static const struct url_case cases[] = {
		{ NULL, 0, "http://127.0.0.1:9000" },
		{ "", 0, "http://127.0.0.1:9000" },
		{ "http://h:1", 0, "http://h:1" },
		{ "http://h:1/", 0, "http://h:1" },
		{ "http://h:1///", 0, "http://h:1" },
		{ "http://h:1/base/", 0, "http://h:1/base" },
		{ "https://h:1", -1, NULL },
		{ "ftp://h", -1, NULL },
		{ "h:1", -1, NULL },
		{ "HTTP://h", -1, NULL },
		{ "http://", -1, NULL },
		{ " http://h", -1, NULL },
	};
	char out[64], err[256];

	for(size_t i = 0; i < HR_ARRAY_LEN(cases); i++) {
		if(cases[i].value)
			setenv(VAR, cases[i].value, 1);
		else
			unsetenv(VAR);
		snprintf(out, sizeof(out), "untouched");
		err[0] = '\0';
		int rc = config_url(VAR, "http://127.0.0.1:9000/", out, sizeof(out), err, sizeof(err));
		if(!CHECK_INT(rc, cases[i].rc))
			printf("   value \"%s\"\n", cases[i].value ? cases[i].value : "(unset)");
		if(cases[i].rc == 0) {
			CHECK_STR(out, cases[i].want);
		} else {
			CHECK_CONTAINS(err, VAR);
			CHECK_CONTAINS(err, "http://");
		}
	}

	/* Too long for out: refused rather than cut. */
	char tiny[12];
	setenv(VAR, "http://example:1234", 1);
	CHECK_INT(config_url(VAR, NULL, tiny, sizeof(tiny), err, sizeof(err)), -1);
	CHECK_CONTAINS(err, VAR);
	setenv(VAR, "http://a:1", 1);
	CHECK_INT(config_url(VAR, NULL, tiny, sizeof(tiny), err, sizeof(err)), 0);
	CHECK_STR(tiny, "http://a:1");
	unsetenv(VAR);
}

static void test_config_url_empty_host(void)
{
	char out[64] = "", err[256] = "";
	int rc;

	/* "http://" alone is refused; with a trailing slash it passes and the
	 * stripping leaves the very base URL that was refused. */
	setenv(VAR, "http:///", 1);
	rc = config_url(VAR, NULL, out, sizeof(out), err, sizeof(err));
	CHECK_INT(rc, -1);
	if(rc == 0)
		printf("   got out=\"%s\"\n", out);
	unsetenv(VAR);
}

int main(void)
{
	RUN(test_parse_int64);
	RUN(test_config_int);
	RUN(test_config_str);
	RUN(test_config_url);
	RUN(test_config_url_empty_host);
	return check_done();
}

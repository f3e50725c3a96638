/* test_buf.c - the bounded buffer: cap, printf, detach, reset. */
#include "hearty.h"
#include "buf.h"
#include "check.h"

#include <stdint.h>

/* The buffer's text, read through the API (detach hands over a copy we free). */
static void check_content(struct buf *b, const char *want, const char *file, int line)
{
	size_t len = 0;
	struct buf copy;
	char *text;

	buf_init(&copy, 1 << 20);
	if(b->len)
		check_result(buf_append(&copy, b->data, b->len) == 0, file, line, "copy");
	text = buf_detach(&copy, &len);
	check_str(text, want, file, line, "buffer", want);
	check_int((long long)len, (long long)strlen(want), file, line, "buffer length", "strlen(want)");
	free(text);
}
#define CHECK_CONTENT(b, want) check_content((b), (want), __FILE__, __LINE__)

static void test_cap_enforced(void)
{
	struct buf b;

	buf_init(&b, 8);
	CHECK_INT(buf_append(&b, "12345", 5), 0);
	CHECK_INT(buf_append(&b, "6789", 4), -1);   /* 9 > 8 */
	CHECK_INT(b.len, 5);
	CHECK_CONTENT(&b, "12345");
	CHECK_INT(buf_puts(&b, "abcd"), -1);
	CHECK_INT(buf_printf(&b, "%s", "wxyz"), -1);
	CHECK_CONTENT(&b, "12345");
	CHECK_INT(buf_append(&b, "678", 3), 0);     /* exactly the cap */
	CHECK_CONTENT(&b, "12345678");
	CHECK_INT(buf_append(&b, "", 0), 0);        /* nothing more is fine */
	CHECK_INT(buf_append(&b, "x", 1), -1);
	CHECK_INT(buf_printf(&b, "%d", 1), -1);
	CHECK_CONTENT(&b, "12345678");
	buf_release(&b);

	/* A cap of zero takes nothing but the empty string. */
	buf_init(&b, 0);
	CHECK_INT(buf_append(&b, "a", 1), -1);
	CHECK_INT(buf_append(&b, "", 0), 0);
	CHECK_INT(b.len, 0);
	buf_release(&b);

	/* Growing past the first allocation keeps every byte and still stops at the cap. */
	buf_init(&b, 10000);
	for(int i = 0; i < 1000; i++)
		if(buf_append(&b, "abcdefghij", 10))
			CHECK(!"append below the cap failed");
	CHECK_INT(b.len, 10000);
	CHECK_INT(buf_append(&b, "k", 1), -1);
	CHECK_INT(b.len, 10000);
	CHECK(memcmp(b.data + 9990, "abcdefghij", 10) == 0);
	CHECK(b.data[10000] == '\0');
	buf_release(&b);
}

static void test_huge_append_rejected(void)
{
	struct buf b;

	/* Lengths near SIZE_MAX must not wrap the size arithmetic. */
	buf_init(&b, 1024);
	CHECK_INT(buf_append(&b, "x", 1), 0);
	CHECK_INT(buf_append(&b, "y", SIZE_MAX), -1);
	CHECK_INT(buf_append(&b, "y", SIZE_MAX - 1), -1);
	CHECK_CONTENT(&b, "x");
	buf_release(&b);
}

static void test_uncapped_buffer(void)
{
	struct buf b;

	/* max + 1 wraps to 0 in buf_reserve, so cap becomes 0 and realloc(NULL, 0)
	 * returns a 0-byte block that the append then writes into. */
	buf_init(&b, SIZE_MAX);
	CHECK_INT(buf_append(&b, "hello", 5), 0);
	/* The next growth asks realloc for 0 bytes, which frees the block. */
	if(!CHECK_INT(buf_append(&b, " world", 6), 0))
		return;   /* b.data was freed by realloc(p, 0): releasing it would double-free */
	CHECK_CONTENT(&b, "hello world");
	buf_release(&b);
}

static void test_printf(void)
{
	struct buf b;

	buf_init(&b, 64);
	CHECK_INT(buf_printf(&b, "%s-%d", "ab", 42), 0);
	CHECK_CONTENT(&b, "ab-42");
	CHECK_INT(buf_printf(&b, "/%05.1f/%c", 2.5, 'z'), 0);
	CHECK_CONTENT(&b, "ab-42/002.5/z");
	CHECK_INT(buf_printf(&b, "%s", ""), 0);
	CHECK_INT(b.len, 13);
	buf_release(&b);

	/* Formatting exactly to the cap succeeds; one byte more fails and changes nothing. */
	buf_init(&b, 10);
	CHECK_INT(buf_printf(&b, "%010d", 7), 0);
	CHECK_CONTENT(&b, "0000000007");
	buf_reset(&b);
	CHECK_INT(buf_printf(&b, "%011d", 7), -1);
	CHECK_INT(b.len, 0);
	CHECK_INT(buf_printf(&b, "%s", "abc"), 0);
	CHECK_INT(buf_printf(&b, "%s", "12345678"), -1);
	CHECK_CONTENT(&b, "abc");
	buf_release(&b);

	/* Longer than the first allocation (256). */
	buf_init(&b, 4096);
	CHECK_INT(buf_printf(&b, "%600s|", "x"), 0);
	CHECK_INT(b.len, 601);
	CHECK(b.data[599] == 'x' && b.data[600] == '|' && b.data[601] == '\0');
	buf_release(&b);
}

static void test_detach(void)
{
	struct buf b;
	size_t len = 99;
	char *p, *q;

	buf_init(&b, 100);
	CHECK_INT(buf_puts(&b, "owned"), 0);
	p = buf_detach(&b, &len);
	CHECK_STR(p, "owned");
	CHECK_INT(len, 5);
	/* The buffer is empty and reusable; the detached block is ours. */
	CHECK_INT(b.len, 0);
	CHECK(b.data == NULL);
	CHECK_INT(buf_puts(&b, "again"), 0);
	q = buf_detach(&b, NULL);
	CHECK_STR(q, "again");
	CHECK(p != q);
	CHECK_STR(p, "owned");
	free(p);
	free(q);

	/* A buffer emptied by a reset detaches as "". */
	CHECK_INT(buf_puts(&b, "gone"), 0);
	buf_reset(&b);
	p = buf_detach(&b, &len);
	CHECK_STR(p, "");
	CHECK_INT(len, 0);
	free(p);
	buf_release(&b);
}

static void test_detach_never_used(void)
{
	struct buf b;
	size_t len = 99;
	char *p;

	/* buf_detach calls buf_reserve(b, 0), which allocates but does not write
	 * the NUL; the "if(!b->data)" branch that would is then skipped. */
	buf_init(&b, 100);
	p = buf_detach(&b, &len);
	CHECK(p != NULL);
	CHECK(p && p[0] == '\0');
	CHECK_INT(len, 0);
	free(p);
	buf_init(&b, 0);              /* a 1-byte block: a strlen on it overruns */
	p = buf_detach(&b, &len);
	CHECK(p && p[0] == '\0');
	free(p);
	buf_release(&b);
}

static void test_reset_and_release(void)
{
	struct buf b;

	buf_init(&b, 6);
	CHECK_INT(buf_puts(&b, "abcdef"), 0);
	buf_reset(&b);
	CHECK_INT(b.len, 0);
	CHECK_STR(b.data, "");
	/* After a reset the whole cap is available again, and no more. */
	CHECK_INT(buf_puts(&b, "uvwxyz"), 0);
	CHECK_CONTENT(&b, "uvwxyz");
	CHECK_INT(buf_puts(&b, "!"), -1);
	buf_release(&b);
	CHECK_INT(b.len, 0);
	CHECK(b.data == NULL);
	/* Released buffers are reusable with the same cap. */
	CHECK_INT(buf_puts(&b, "123456"), 0);
	CHECK_INT(buf_puts(&b, "7"), -1);
	CHECK_CONTENT(&b, "123456");
	buf_release(&b);
	buf_release(&b);      /* twice is harmless */

	/* Reset of a never-used buffer is a no-op. */
	buf_init(&b, 4);
	buf_reset(&b);
	CHECK_INT(b.len, 0);
	buf_release(&b);
}

int main(void)
{
	RUN(test_cap_enforced);
	RUN(test_huge_append_rejected);
	RUN(test_uncapped_buffer);
	RUN(test_printf);
	RUN(test_detach);
	RUN(test_detach_never_used);
	RUN(test_reset_and_release);
	return check_done();
}

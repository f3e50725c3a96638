/*
 * check.h - the unit tests' assertions.
 *
 * A failed check prints file:line and the expression (with both values for
 * the _INT and _STR forms) and counts; the suite goes on, so one run shows
 * every failure. check_done() prints "N passed, N failed" as the last line and
 * returns the exit status (non-zero when anything failed). The counters are
 * atomic: checks may run in threads a suite starts (handlers, workers).
 *
 * Include it from a suite's .c only: it defines static state.
 */
#ifndef HEARTY_UNIT_CHECK_H
#define HEARTY_UNIT_CHECK_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Atomic int check_passed, check_failed;

static inline bool check_result(bool ok, const char *file, int line, const char *what)
{
	if(ok) {
		check_passed++;
		return true;
	}
	check_failed++;
	printf("%s:%d: FAILED: %s\n", file, line, what);
	fflush(stdout);
	return false;
}

static inline bool check_int(long long got, long long want, const char *file, int line,
			     const char *got_expr, const char *want_expr)
{
	if(got == want)
		return check_result(true, file, line, "");
	check_failed++;
	printf("%s:%d: FAILED: %s == %s (got %lld, want %lld)\n", file, line, got_expr,
	       want_expr, got, want);
	fflush(stdout);
	return false;
}

static inline bool check_str(const char *got, const char *want, const char *file, int line,
			     const char *got_expr, const char *want_expr)
{
	if(got && want && strcmp(got, want) == 0)
		return check_result(true, file, line, "");
	check_failed++;
	printf("%s:%d: FAILED: %s == %s (got \"%s\", want \"%s\")\n", file, line, got_expr,
	       want_expr, got ? got : "(null)", want ? want : "(null)");
	fflush(stdout);
	return false;
}

static inline bool check_contains(const char *hay, const char *needle, const char *file,
				  int line, const char *hay_expr)
{
	if(hay && strstr(hay, needle))
		return check_result(true, file, line, "");
	check_failed++;
	printf("%s:%d: FAILED: %s contains \"%s\" (got \"%s\")\n", file, line, hay_expr, needle,
	       hay ? hay : "(null)");
	fflush(stdout);
	return false;
}

/* Each evaluates to true when the check passed, so a test can stop early. */
#define CHECK(expr)              check_result(!!(expr), __FILE__, __LINE__, #expr)
#define CHECK_INT(got, want)     check_int((long long)(got), (long long)(want), __FILE__, __LINE__, #got, #want)
#define CHECK_STR(got, want)     check_str((got), (want), __FILE__, __LINE__, #got, #want)
#define CHECK_CONTAINS(hay, sub) check_contains((hay), (sub), __FILE__, __LINE__, #hay)

/* Runs one test function, naming it first so failures are easy to place. */
#define RUN(test) do { printf("-- %s\n", #test); fflush(stdout); test(); } while(0)
/* The same for a test that takes the suite's shared fixture. */
#define RUN_WITH(test, arg) do { printf("-- %s\n", #test); fflush(stdout); test(arg); } while(0)

/* Prints the summary as the last line; returns the process exit status. */
static inline int check_done(void)
{
	int passed = check_passed, failed = check_failed;
	printf("%d passed, %d failed\n", passed, failed);
	fflush(stdout);
	return failed ? 1 : 0;
}

#endif

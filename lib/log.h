/*
 * log.h - JSON-lines logs on stderr.
 *
 * One line per event: {"ts","level","service","requestId","msg",...fields}.
 * The request id is per thread: the server sets it before a handler runs, the
 * HTTP client sends it on every outbound call, so one id follows a request
 * through every hop. Each line is written with one write(2), so lines from
 * threads and processes sharing a file do not interleave.
 */
#ifndef HEARTY_LOG_H
#define HEARTY_LOG_H

#include <jansson.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Sets the service name and the lowest level written. Call once at start. */
void log_init(const char *service, enum log_level level);
/* Parses "debug", "info", "warn", "error"; returns 0 or -1 if unknown. */
int log_level_parse(const char *text, enum log_level *out);
/* True when a line of this level would be written (skip building fields otherwise). */
bool log_enabled(enum log_level level);

/* Writes one line. fields (may be NULL) is an object whose members are added
 * to the line; it is stolen (the caller no longer owns it, even on failure). */
void log_event(enum log_level level, const char *msg, json_t *fields);

/* The current thread's request id ("" when none). The pointer stays valid
 * until the thread sets another id. */
const char *log_request_id(void);
/* Sets the current thread's request id (truncated to 64 bytes); NULL clears. */
void log_set_request_id(const char *id);

#endif

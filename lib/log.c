/* log.c - JSON-lines logging with a per-thread request id. */
#include "hearty.h"
#include "log.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *log_service = "hearty";
static enum log_level log_min = LOG_INFO;
static __thread char log_rid[65];

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void log_init(const char *service, enum log_level level)
{
	log_service = service;
	log_min = level;
}

int log_level_parse(const char *text, enum log_level *out)
{
	for(size_t i = 0; i < HR_ARRAY_LEN(level_names); i++) {
		if(strcmp(text, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

bool log_enabled(enum log_level level)
{
	return level >= log_min;
}

const char *log_request_id(void)
{
	return log_rid;
}

void log_set_request_id(const char *id)
{
	if(!id) {
		log_rid[0] = '\0';
		return;
	}
	snprintf(log_rid, sizeof(log_rid), "%s", id);
}

void log_event(enum log_level level, const char *msg, json_t *fields)
{
	char ts[32];
	json_t *line;
	char *text;

	if(!log_enabled(level)) {
		json_decref(fields);
		return;
	}
	hr_time_iso(hr_now_ms(), ts, sizeof(ts));
	line = json_pack("{s:s,s:s,s:s,s:s}", "ts", ts, "level", level_names[level],
			 "service", log_service, "msg", msg);
	if(!line) {
		json_decref(fields);
		return;
	}
	if(log_rid[0])
		json_object_set_new(line, "requestId", json_string(log_rid));
	if(json_is_object(fields))
		json_object_update(line, fields);
	json_decref(fields);
	text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(line);
	if(!text)
		return;
	size_t len = strlen(text);
	text[len] = '\n'; /* overwrite the NUL: one write for the whole line */
	ssize_t wrote = write(STDERR_FILENO, text, len + 1);
	(void)wrote;
	free(text);
}

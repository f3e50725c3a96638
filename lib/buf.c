/* buf.c - bounded growable buffer. */
#include "hearty.h"
#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

void buf_init(struct buf *b, size_t max)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	/* Room for max + 1 bytes (the NUL) must not wrap. */
	b->max = max < SIZE_MAX / 2 ? max : SIZE_MAX / 2;
}

void buf_release(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	if(b->data)
		b->data[0] = '\0';
}

static int buf_reserve(struct buf *b, size_t extra)
{
	size_t need, cap;
	char *p;

	if(extra > b->max || b->len > b->max - extra)
		return -1;
	need = b->len + extra + 1;
	if(need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 256;
	while(cap < need)
		cap *= 2;
	if(cap > b->max + 1)
		cap = b->max + 1;
	p = realloc(b->data, cap);
	if(!p)
		return -1;
	b->data = p;
	b->cap = cap;
	return 0;
}

int buf_append(struct buf *b, const void *data, size_t len)
{
	if(buf_reserve(b, len))
		return -1;
	if(len)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
	return 0;
}

int buf_puts(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if(n < 0 || buf_reserve(b, (size_t)n))
		return -1;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

char *buf_detach(struct buf *b, size_t *len)
{
	char *p;

	if(!b->data) {
		b->data = malloc(1);
		if(!b->data)
			return NULL;
		b->data[0] = '\0';
	}
	p = b->data;
	if(len)
		*len = b->len;
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	return p;
}

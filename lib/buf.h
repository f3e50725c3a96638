/*
 * buf.h - a growable byte buffer with a hard cap (curl's dynbuf idea).
 *
 * Every append checks the cap; once an append fails the buffer stays as it
 * was, so a caller can report "too big" instead of writing a truncated body.
 * The data is always NUL-terminated for convenience (the NUL is not counted).
 */
#ifndef HEARTY_BUF_H
#define HEARTY_BUF_H

#include <stddef.h>

struct buf {
	char *data;   /* private: NULL until the first append */
	size_t len;   /* bytes used, not counting the NUL */
	size_t cap;   /* private: bytes allocated */
	size_t max;   /* private: the hard cap on len */
};

/* Initialises an empty buffer that will never hold more than max bytes. */
void buf_init(struct buf *b, size_t max);
/* Frees the storage; the buffer is empty and reusable afterwards. */
void buf_release(struct buf *b);
/* Empties the buffer, keeping its storage. */
void buf_reset(struct buf *b);
/* Appends; returns 0, or -1 when it would pass the cap or memory ran out. */
int buf_append(struct buf *b, const void *data, size_t len);
int buf_puts(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands over the storage (malloc'd, NUL-terminated, never NULL on success);
 * the caller now owns it and frees it. The buffer is left empty. Returns NULL
 * only if memory ran out. */
char *buf_detach(struct buf *b, size_t *len);

#endif

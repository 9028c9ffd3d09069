/* A growable byte buffer for building responses: JSON documents, NDJSON lines, metrics. */
#ifndef FP_SERVER_SBUF_H
#define FP_SERVER_SBUF_H

#include <stdbool.h>
#include <stddef.h>

struct sbuf {
	char *data;
	size_t len, cap;
	bool oom;          /* an append failed: the content is incomplete */
};

void sbuf_init(struct sbuf *b);
void sbuf_free(struct sbuf *b);
void sbuf_reset(struct sbuf *b);
void sbuf_add(struct sbuf *b, const char *s, size_t n);
void sbuf_adds(struct sbuf *b, const char *s);
/*
 * Room for n more bytes at data + len, or NULL (oom set); sbuf_commit()
 * then says how many of them were written. For text written in place, a
 * line at a time, instead of an append per piece.
 */
char *sbuf_reserve(struct sbuf *b, size_t n);
void sbuf_commit(struct sbuf *b, size_t n);
/* v in decimal at d (room for 20 digits); returns the end. */
char *sbuf_put_uint(char *d, unsigned long long v);
/* v in decimal at the end. */
void sbuf_add_uint(struct sbuf *b, unsigned long long v);
void sbuf_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* `s` as a JSON string, quotes included; invalid UTF-8 bytes become U+FFFD. */
void sbuf_json_string(struct sbuf *b, const char *s, size_t n);
/* Milliseconds since the epoch as an RFC 3339 UTC string in quotes, or null for 0. */
void sbuf_json_time(struct sbuf *b, unsigned long long ms);

#endif

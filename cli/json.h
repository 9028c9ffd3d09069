/*
 * Reading members of the server's JSON documents for printing: a missing
 * or mistyped member gives the caller's default (a string) or 0 (a
 * number), since a table row or a status line shows "-" or 0 rather than
 * failing over a field an older server does not send.
 */
#ifndef FORKPOOL_CLI_JSON_H
#define FORKPOOL_CLI_JSON_H

#include <jansson.h>

static inline const char *cli_json_str(json_t *o, const char *key, const char *dflt)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : dflt;
}

static inline long long cli_json_int(json_t *o, const char *key)
{
	return (long long)json_integer_value(json_object_get(o, key));
}

#endif

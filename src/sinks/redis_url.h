/*
 * redis_url.h - the Redis URLs of the Redis stream sink, parsed strictly
 * (redis_url.c). Kept apart from the sink so that it can be tested and fuzzed
 * on its own. Nothing here is part of the public API.
 */
#ifndef UOW_SINKS_REDIS_URL_H
#define UOW_SINKS_REDIS_URL_H

#include <stdbool.h>
#include <stddef.h>

/** A parsed URL. Strings are owned (uow__redis_url_free releases them). */
typedef struct uow_redis_url {
  bool unix_socket; /* redis+unix:// */
  char *host;       /* redis://: a name or address, an IPv6 one without brackets */
  int port;
  char *path; /* redis+unix://: the socket */
  int db;
  char *user;     /* NULL: none (AUTH password) */
  char *password; /* NULL: no AUTH */
} uow_redis_url;

/**
 * Parse `text` into `url`: 0; UOW_EINVAL (not one of the accepted forms);
 * UOW_ENOMEM. On failure `url` holds nothing to free.
 */
int uow__redis_url_parse(const char *text, uow_redis_url *url);

/** Release the strings of a parsed URL (the password is wiped first) and clear it. */
void uow__redis_url_free(uow_redis_url *url);

/** Write the URL for messages into `out`: no password ("user:***@" instead). */
void uow__redis_url_label(const uow_redis_url *url, char *out, size_t cap);

#endif /* UOW_SINKS_REDIS_URL_H */

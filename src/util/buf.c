/*
 * buf.c - growable text buffers (SQL, messages) and arrays. An append that
 * cannot allocate marks the buffer failed instead of returning an error at
 * every call; the builder checks uow__buf_status() once at the end.
 */
#include <stdio.h>
#include <string.h>

#include "util.h"

void uow__buf_init(uow_buf *buf) { memset(buf, 0, sizeof(*buf)); }

void uow__buf_free(uow_buf *buf) {
  uow__free(buf->data);
  uow__buf_init(buf);
}

void uow__buf_reset(uow_buf *buf) {
  buf->len = 0;
  buf->failed = false;
  if (buf->data)
    buf->data[0] = '\0';
}

static bool buf_reserve(uow_buf *buf, size_t extra) {
  if (buf->failed)
    return false;
  if (buf->len + extra + 1 <= buf->cap)
    return true;
  size_t cap = buf->cap ? buf->cap : 128;
  while (cap < buf->len + extra + 1)
    cap *= 2;
  char *data = uow__realloc(buf->data, cap);
  if (!data) {
    buf->failed = true;
    return false;
  }
  buf->data = data;
  buf->cap = cap;
  return true;
}

void uow__buf_append(uow_buf *buf, const void *data, size_t len) {
  if (!buf_reserve(buf, len))
    return;
  memcpy(buf->data + buf->len, data, len);
  buf->len += len;
  buf->data[buf->len] = '\0';
}

void uow__buf_puts(uow_buf *buf, const char *s) { uow__buf_append(buf, s, strlen(s)); }

void uow__buf_printf(uow_buf *buf, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char small[256];
  int n = vsnprintf(small, sizeof(small), fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if ((size_t)n < sizeof(small)) {
    uow__buf_append(buf, small, (size_t)n);
    return;
  }
  if (!buf_reserve(buf, (size_t)n))
    return;
  va_start(ap, fmt);
  vsnprintf(buf->data + buf->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  buf->len += (size_t)n;
}

int uow__buf_status(const uow_buf *buf) { return buf->failed ? UOW_ENOMEM : UOW_OK; }

/* Room for `cap` items of `size` bytes, the first vec->len kept. */
static int vec_resize(uow_vec *vec, size_t cap, size_t size) {
  if (size && cap > SIZE_MAX / size)
    return UOW_ENOMEM;
  size_t bytes = cap * size;
  size_t mapped = 0;
  void *items = NULL;
  if (vec->mapped || (vec->huge && bytes >= UOW_BIG_MIN)) {
    mapped = bytes;
    if (!(items = uow__huge_reserve(&mapped)))
      mapped = 0;
  }
  if (!items && !vec->mapped) {
    if (!(items = uow__realloc(vec->items, bytes)))
      return UOW_ENOMEM;
  } else {
    /* Moved: pages cannot be reallocated, nor allocated memory remapped. */
    if (!items && !(items = uow__malloc(bytes)))
      return UOW_ENOMEM;
    if (vec->len)
      memcpy(items, vec->items, vec->len * size);
    uow__big_free(vec->items, vec->mapped, vec->mapped != 0);
  }
  vec->items = items;
  vec->cap = mapped ? mapped / size : cap;
  vec->mapped = mapped;
  return UOW_OK;
}

int uow__vec_grow(uow_vec *vec, size_t size) {
  return vec_resize(vec, vec->cap ? vec->cap * 2 : 8, size);
}

int uow__vec_reserve(uow_vec *vec, size_t n, size_t size) {
  return n <= vec->cap ? UOW_OK : vec_resize(vec, n, size);
}

void uow__vec_free(uow_vec *vec) {
  uow__big_free(vec->items, vec->mapped, vec->mapped != 0);
  vec->items = NULL;
  vec->len = vec->cap = vec->mapped = 0;
}

void uow__vec_keep(uow_vec *vec, size_t size, size_t limit) {
  if (vec->cap * size > limit)
    uow__vec_free(vec);
  vec->len = 0;
}

/*
 * util.h - internal building blocks shared by the core and the stores:
 * the allocator hook, a unit-lifetime arena, a growable byte buffer (used to
 * build SQL and messages), a growable array and an open-addressing hash map.
 * Nothing here is part of the public API.
 */
#ifndef UOW_UTIL_H
#define UOW_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "uow.h"
#include "uow/store.h"

#if defined(__GNUC__)
#define UOW_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define UOW_UNUSED __attribute__((unused))
#else
#define UOW_PRINTF(a, b)
#define UOW_UNUSED
#endif

/* ---- allocator (alloc.c): the only place that calls malloc and free ---- */
void *uow__malloc(size_t size);
void *uow__calloc(size_t count, size_t size);
void *uow__realloc(void *ptr, size_t size);
void uow__free(void *ptr);
char *uow__strdup(const char *s);
char *uow__strndup(const char *s, size_t n);

/* Memory for arena blocks and hash tables. From UOW_BIG_MIN bytes on, with
 * the C library's allocator, fresh pages all in place (MAP_POPULATE: one
 * system call instead of a page fault per page touched), zeroed, and *size
 * rounded up to whole pages of UOW_PAGE bytes (at least the system's page
 * size is then mapped). Otherwise (smaller, an allocator set with
 * uow_set_allocator, or the system refuses) uow__malloc, or uow__calloc when
 * `zeroed`. A multiple of UOW_HUGE bytes goes on transparent huge pages where
 * the system has them. *paged says which; NULL on ENOMEM. Release with
 * uow__big_free, with the size asked for or the one returned. */
enum { UOW_BIG_MIN = 64 << 10, UOW_PAGE = 4096, UOW_HUGE = 2 << 20 };
void *uow__big_alloc(size_t *size, bool zeroed, bool *paged);
void uow__big_free(void *p, size_t size, bool paged);
/* Address space for a list that may grow big: *size (at least UOW_BIG_MIN)
 * rounded up to UOW_HUGE, on transparent huge pages where the system has
 * them, and not touched: each 2 MiB comes at its first touch as one huge
 * page, or page by page where there are none. NULL when not possible (an
 * allocator set with uow_set_allocator, or the system refuses). Release with
 * uow__big_free(p, *size, true). */
void *uow__huge_reserve(size_t *size);

/* ---- arena (arena.c): memory that lives until the arena is freed ---- */
typedef struct uow_arena_block uow_arena_block;
typedef struct uow_arena {
  unsigned char *next;    /* the free part of the newest block: next.. */
  unsigned char *limit;   /* ..limit (both NULL without a block) */
  uow_arena_block *head;  /* blocks in use, newest first */
  uow_arena_block *spare; /* blocks kept by uow__arena_recycle, reused first */
  size_t next_size;
} uow_arena;
void uow__arena_init(uow_arena *arena);
/* uow__arena_alloc_raw or uow__arena_bytes (`aligned` false) when the newest
 * block is short: allocates in a new one. */
void *uow__arena_alloc_block(uow_arena *arena, size_t size, bool aligned);
/* Not zeroed, 16-byte aligned: for memory the caller writes whole. Inline:
 * a unit takes a piece for every object. Taken from the bottom of the free
 * part of the newest block. */
static inline void *uow__arena_alloc_raw(uow_arena *arena, size_t size) {
  size_t need = (size + 15) & ~(size_t)15;
  if (need >= size && need && (uintptr_t)arena->limit - (uintptr_t)arena->next >= need) {
    void *p = arena->next;
    arena->next += need;
    return p;
  }
  return uow__arena_alloc_block(arena, size, true);
}
/* Not zeroed, not aligned: for text, which needs no alignment. Taken from the
 * top of the free part, so that neither kind of piece pads the other: a
 * 23-byte string takes 23 bytes, not 32. */
static inline char *uow__arena_bytes(uow_arena *arena, size_t size) {
  if (size && (uintptr_t)arena->limit - (uintptr_t)arena->next >= size) {
    arena->limit -= size;
    return (char *)arena->limit;
  }
  return uow__arena_alloc_block(arena, size, false);
}
void *uow__arena_alloc(uow_arena *arena, size_t size); /* zeroed, 16-byte aligned; NULL on ENOMEM */
void *uow__arena_dup(uow_arena *arena, const void *data, size_t size);
/* `n` bytes of `s` and a NUL, unaligned (uow__arena_bytes). Inline:
 * uow_strdup copies every text member of every object a program makes. */
static inline char *uow__arena_strndup(uow_arena *arena, const char *s, size_t n) {
  char *p = n + 1 ? uow__arena_bytes(arena, n + 1) : NULL;
  if (p) {
    memcpy(p, s, n);
    p[n] = '\0';
  }
  return p;
}
void uow__arena_free(uow_arena *arena);
/* Forget every allocation but keep up to `keep` bytes of blocks for reuse. */
void uow__arena_recycle(uow_arena *arena, size_t keep);

/* ---- byte buffer (buf.c): append-only text; `failed` sticks after ENOMEM ---- */
typedef struct uow_buf {
  char *data;
  size_t len;
  size_t cap;
  bool failed;
} uow_buf;
void uow__buf_init(uow_buf *buf);
void uow__buf_free(uow_buf *buf);
void uow__buf_reset(uow_buf *buf);
void uow__buf_append(uow_buf *buf, const void *data, size_t len);
void uow__buf_puts(uow_buf *buf, const char *s);
void uow__buf_printf(uow_buf *buf, const char *fmt, ...) UOW_PRINTF(2, 3);
/* Returns 0 or UOW_ENOMEM if any append failed. */
int uow__buf_status(const uow_buf *buf);

/* ---- growable array (buf.c) ---- */
typedef struct uow_vec {
  void *items;
  size_t len;
  size_t cap;
  size_t mapped; /* bytes of items from uow__huge_reserve; 0: from the allocator */
  bool huge;     /* from UOW_BIG_MIN bytes on, grow on uow__huge_reserve's pages */
} uow_vec;
/* Make room for one more item when the vector is full (uow__vec_push). A
 * vector marked `huge` (a unit's record list, which a bulk load grows to
 * hundreds of KiB) takes its room from UOW_BIG_MIN bytes on 2 MiB at a
 * time, on huge pages, rather than from reallocations that touch fresh
 * small pages one fault at a time. */
int uow__vec_grow(uow_vec *vec, size_t size);
/* Make room for one more item of `size` bytes; returns a pointer to it (zeroed) or NULL.
 * Inline: a flush pushes several items per write, and `size` is known here. */
static inline void *uow__vec_push(uow_vec *vec, size_t size) {
  if (vec->len == vec->cap && uow__vec_grow(vec, size))
    return NULL;
  void *slot = (char *)vec->items + vec->len++ * size;
  memset(slot, 0, size);
  return slot;
}
/* Make room for `n` items of `size` bytes in all (no more reallocations up to
 * there); 0 or UOW_ENOMEM, the vector unchanged. */
int uow__vec_reserve(uow_vec *vec, size_t n, size_t size);
void uow__vec_free(uow_vec *vec);
/* Empty the vector for reuse, freeing its items when they take more than
 * `limit` bytes. */
void uow__vec_keep(uow_vec *vec, size_t size, size_t limit);
#define UOW_VEC_AT(vec, type, i) (((type *)(vec)->items)[i])

/* ---- hash map (map.c): keys are (tag pointer, 64-bit hash, opaque key) ---- */
typedef struct uow_map_entry {
  uint64_t hash;
  void *value; /* NULL: empty slot */
} uow_map_entry;
typedef struct uow_map {
  uow_map_entry *slots;
  size_t cap; /* power of two */
  size_t len;
  bool paged; /* slots from uow__big_alloc's pages */
} uow_map;
/* `eq(value, key)` says whether a stored value matches the searched key. */
typedef bool (*uow_map_eq)(const void *value, const void *key);
void *uow__map_get(const uow_map *map, uint64_t hash, uow_map_eq eq, const void *key);
int uow__map_put(uow_map *map, uint64_t hash,
                 void *value); /* 0 or UOW_ENOMEM; no duplicate check */
bool uow__map_remove(uow_map *map, uint64_t hash, const void *value);
void uow__map_free(uow_map *map);
uint64_t uow__hash_bytes(const void *data, size_t len, uint64_t seed);
/* A 64-bit integer (a key, a pointer) hashed without a byte loop. */
uint64_t uow__hash_u64(uint64_t x, uint64_t seed);

/* ---- values and columns (value.c) ---- */
/* Read the member of `object` described by `col` into `*out` (no copy of its
 * bytes). Inline: a flush reads every column of every row it writes or
 * compares. Each case stores a whole value straight into `*out`: a value set
 * field by field in a temporary and then copied is read back before its
 * narrow stores have landed, which stalls the CPU on every column. So where
 * a value goes to memory (an array, a write, a key passed by address), read
 * it there with this rather than copying uow__column_value's result. */
static inline void uow__column_read(const uow_column *col, const void *object, uow_value *out) {
  const char *member = (const char *)object + col->offset;
  bool nullable = col->flags & UOW_NULLABLE;
  switch (col->type) {
  case UOW_INT64: {
    int64_t i;
    memcpy(&i, member, sizeof(i));
    *out = (uow_value){.type = UOW_INT64, .is_null = nullable && i == 0, .v.i = i};
    return;
  }
  case UOW_DOUBLE: {
    double d;
    memcpy(&d, member, sizeof(d));
    *out = (uow_value){.type = UOW_DOUBLE, .is_null = nullable && d == 0.0, .v.d = d};
    return;
  }
  case UOW_BOOL: {
    bool b;
    memcpy(&b, member, sizeof(b));
    *out = (uow_value){.type = UOW_BOOL, .is_null = nullable && !b, .v.b = b};
    return;
  }
  case UOW_TEXT: {
    const char *s;
    memcpy(&s, member, sizeof(s));
    *out = (uow_value){.type = UOW_TEXT, .is_null = s == NULL, .v.bytes = {s, s ? strlen(s) : 0}};
    return;
  }
  case UOW_BLOB: {
    uow_blob blob;
    memcpy(&blob, member, sizeof(blob));
    *out = (uow_value){.type = UOW_BLOB,
                       .is_null = blob.data == NULL,
                       .v.bytes = {blob.data, blob.data ? blob.size : 0}};
    return;
  }
  }
  *out = (uow_value){.type = col->type};
}
/* The member as a value, for a caller that keeps it in registers. */
static inline uow_value uow__column_value(const uow_column *col, const void *object) {
  uow_value value;
  uow__column_read(col, object, &value);
  return value;
}
/* True when two values are equal (type of `a` decides; NULLs equal each other). */
bool uow__value_equal(const uow_value *a, const uow_value *b);
/* The index of the primary key column of a checked entity. */
size_t uow__entity_key_index(const uow_entity *entity);
/* Hash of a key value. */
uint64_t uow__value_hash(const uow_value *value);
/* A quoted, safe SQL identifier is produced by the stores; identifiers are
 * checked at mapping time to be [A-Za-z_][A-Za-z0-9_]*. */
bool uow__identifier_ok(const char *name);
/* The value of a hexadecimal digit (either case), or -1. */
int uow__hex_digit(char c);
/* Bytes in one text or blob value: no store takes more (PostgreSQL's wire
 * format counts them in an int, SQLite's hard limit is the same), and a
 * larger size_t is most likely a negative count converted. */
#define UOW__VALUE_MAX ((size_t)0x7fffffff)

/* ---- time (clock.c) ---- */
/* Milliseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t uow__now_ms(void);
/* Sleep `ms` milliseconds (nothing for ms <= 0), resuming after signals. */
void uow__sleep_ms(int64_t ms);
/* A non-zero seed for uow__jitter from the clock and `salt`. */
uint64_t uow__random_seed(const void *salt);
/* Half of `backoff` plus a random part of the other half ("equal jitter"). */
int64_t uow__jitter(int64_t backoff, uint64_t *seed);

/* ---- errors (error.c) ---- */
/* Remove a URL's password ("user:secret@" -> "user:***@") into `out`. */
void uow__redact_url(const char *url, char *out, size_t cap);

#endif /* UOW_UTIL_H */

/*
 * alloc.c - the allocator hook. Every allocation the library makes goes
 * through these wrappers, so uow_set_allocator() reaches all of them (tests
 * use it to fail each allocation in turn). This is the only file that may
 * call malloc, realloc and free.
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, MAP_POPULATE, MADV_HUGEPAGE */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "util.h"

static void *(*malloc_hook)(size_t) = malloc;
static void *(*realloc_hook)(void *, size_t) = realloc;
static void (*free_hook)(void *) = free;

int uow_set_allocator(void *(*malloc_fn)(size_t), void *(*realloc_fn)(void *, size_t),
                      void (*free_fn)(void *)) {
  if (!malloc_fn && !realloc_fn && !free_fn) {
    malloc_hook = malloc;
    realloc_hook = realloc;
    free_hook = free;
    return UOW_OK;
  }
  if (!malloc_fn || !realloc_fn || !free_fn)
    return UOW_EINVAL;
  malloc_hook = malloc_fn;
  realloc_hook = realloc_fn;
  free_hook = free_fn;
  return UOW_OK;
}

void *uow__malloc(size_t size) { return malloc_hook(size ? size : 1); }

void *uow__calloc(size_t count, size_t size) {
  if (size && count > SIZE_MAX / size)
    return NULL;
  size_t total = count * size;
  void *p = malloc_hook(total ? total : 1);
  if (p)
    memset(p, 0, total);
  return p;
}

void *uow__realloc(void *ptr, size_t size) { return realloc_hook(ptr, size ? size : 1); }

void uow__free(void *ptr) {
  if (ptr)
    free_hook(ptr);
}

char *uow__strndup(const char *s, size_t n) {
  char *copy = uow__malloc(n + 1);
  if (!copy)
    return NULL;
  memcpy(copy, s, n);
  copy[n] = '\0';
  return copy;
}

char *uow__strdup(const char *s) { return s ? uow__strndup(s, strlen(s)) : NULL; }

#if defined(MADV_HUGEPAGE)
/* `whole` bytes (a multiple of UOW_HUGE) on transparent huge pages: mapped
 * with room to spare, trimmed to a UOW_HUGE boundary, then marked. A unit
 * that fills megabytes then takes one fault per 2 MiB instead of 512 (on a
 * virtual machine with shadow page tables, microseconds each: a 20,000-row
 * load spent an eighth of its time there). Where the system has no huge
 * pages for it, the marking does nothing and the pages are the usual ones.
 * `populate`: all in place now; else each page comes at its first touch. */
static void *huge_alloc(size_t whole, bool populate) {
  if (whole > SIZE_MAX - UOW_HUGE)
    return NULL;
  size_t span = whole + UOW_HUGE;
  char *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED)
    return NULL;
  char *p = (char *)(((uintptr_t)raw + UOW_HUGE - 1) & ~(uintptr_t)(UOW_HUGE - 1));
  size_t head = (size_t)(p - raw);
  if (head)
    munmap(raw, head);
  if (span - head > whole)
    munmap(p + whole, span - head - whole);
  madvise(p, whole, MADV_HUGEPAGE);
#if defined(MADV_POPULATE_WRITE)
  /* In place now, as MAP_POPULATE would; a kernel without it (before 5.14)
   * refuses, and the pages come at first touch. */
  if (populate)
    madvise(p, whole, MADV_POPULATE_WRITE);
#else
  (void)populate;
#endif
  return p;
}
#endif

/* With the C library's allocator only: one of the application's sees every byte. */
static bool pages_allowed(size_t size) {
  return malloc_hook == malloc && size >= UOW_BIG_MIN && size <= SIZE_MAX / 2;
}

/* Fresh pages for a big block, all in place; NULL when not possible. */
static void *pages_alloc(size_t *size) {
#if defined(MAP_ANONYMOUS) && defined(MAP_POPULATE)
  if (!pages_allowed(*size))
    return NULL;
  size_t whole = (*size + UOW_PAGE - 1) & ~(size_t)(UOW_PAGE - 1);
  void *p = NULL;
#if defined(MADV_HUGEPAGE)
  if (whole % UOW_HUGE == 0)
    p = huge_alloc(whole, true);
#endif
  if (!p)
    p = mmap(NULL, whole, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1,
             0);
  if (p == MAP_FAILED)
    return NULL;
  *size = whole;
  return p;
#else
  (void)size;
  return NULL;
#endif
}

void *uow__big_alloc(size_t *size, bool zeroed, bool *paged) {
  void *p = pages_alloc(size);
  *paged = p != NULL;
  if (!p)
    p = zeroed ? uow__calloc(1, *size) : uow__malloc(*size);
  return p;
}

void *uow__huge_reserve(size_t *size) {
#if defined(MADV_HUGEPAGE)
  if (!pages_allowed(*size))
    return NULL;
  size_t whole = (*size + UOW_HUGE - 1) & ~(size_t)(UOW_HUGE - 1);
  void *p = huge_alloc(whole, false);
  if (p)
    *size = whole;
  return p;
#else
  (void)size;
  return NULL;
#endif
}

void uow__big_free(void *p, size_t size, bool paged) {
  if (paged)
    munmap(p, size);
  else
    uow__free(p);
}

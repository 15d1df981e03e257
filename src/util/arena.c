/*
 * arena.c - unit-lifetime memory. A unit allocates its tracked objects,
 * snapshots and loaded strings here and frees them all at once at uow_end(),
 * which is both faster than one malloc per value and leak-proof.
 */
#include <string.h>

#include "util.h"

struct uow_arena_block {
  uow_arena_block *next;
  size_t used;
  size_t size;
  _Alignas(16) unsigned char data[];
};

enum { ARENA_FIRST_BLOCK = 4096, ARENA_MAX_BLOCK = 1 << 20 };

void uow__arena_init(uow_arena *arena) {
  arena->head = NULL;
  arena->next_size = ARENA_FIRST_BLOCK;
}

void *uow__arena_alloc(uow_arena *arena, size_t size) {
  size_t need = (size + 15) & ~(size_t)15;
  if (need < size)
    return NULL;
  uow_arena_block *block = arena->head;
  if (!block || block->size - block->used < need) {
    size_t want = arena->next_size;
    if (want < need)
      want = need;
    block = uow__malloc(sizeof(*block) + want);
    if (!block)
      return NULL;
    block->size = want;
    block->used = 0;
    block->next = arena->head;
    arena->head = block;
    if (arena->next_size < ARENA_MAX_BLOCK)
      arena->next_size *= 2;
  }
  void *p = block->data + block->used;
  block->used += need;
  memset(p, 0, need);
  return p;
}

void *uow__arena_dup(uow_arena *arena, const void *data, size_t size) {
  void *p = uow__arena_alloc(arena, size);
  if (p && size)
    memcpy(p, data, size);
  return p;
}

char *uow__arena_strndup(uow_arena *arena, const char *s, size_t n) {
  char *p = uow__arena_alloc(arena, n + 1);
  if (p && n)
    memcpy(p, s, n);
  return p;
}

void uow__arena_free(uow_arena *arena) {
  uow_arena_block *block = arena->head;
  while (block) {
    uow_arena_block *next = block->next;
    uow__free(block);
    block = next;
  }
  uow__arena_init(arena);
}

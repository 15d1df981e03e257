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
  arena->spare = NULL;
  arena->next_size = ARENA_FIRST_BLOCK;
}

/* A block for `need` bytes: a spare one when one is big enough (fresh memory
 * costs a page fault per page touched, kept memory does not), else a new one. */
static uow_arena_block *arena_block(uow_arena *arena, size_t need) {
  for (uow_arena_block **at = &arena->spare; *at; at = &(*at)->next) {
    uow_arena_block *block = *at;
    if (block->size >= need) {
      *at = block->next;
      return block;
    }
  }
  size_t want = arena->next_size;
  if (want < need)
    want = need;
  uow_arena_block *block = uow__malloc(sizeof(*block) + want);
  if (!block)
    return NULL;
  block->size = want;
  if (arena->next_size < ARENA_MAX_BLOCK)
    arena->next_size *= 2;
  return block;
}

void *uow__arena_alloc_raw(uow_arena *arena, size_t size) {
  size_t need = (size + 15) & ~(size_t)15;
  if (need < size || need > SIZE_MAX - sizeof(uow_arena_block))
    return NULL; /* the block's size would wrap around */
  uow_arena_block *block = arena->head;
  if (!block || block->size - block->used < need) {
    if (!(block = arena_block(arena, need)))
      return NULL;
    block->used = 0;
    block->next = arena->head;
    arena->head = block;
  }
  void *p = block->data + block->used;
  block->used += need;
  return p;
}

void *uow__arena_alloc(uow_arena *arena, size_t size) {
  void *p = uow__arena_alloc_raw(arena, size);
  if (p)
    memset(p, 0, size);
  return p;
}

void *uow__arena_dup(uow_arena *arena, const void *data, size_t size) {
  void *p = uow__arena_alloc_raw(arena, size);
  if (p && size)
    memcpy(p, data, size);
  return p;
}

char *uow__arena_strndup(uow_arena *arena, const char *s, size_t n) {
  char *p = n + 1 ? uow__arena_alloc_raw(arena, n + 1) : NULL;
  if (p) {
    memcpy(p, s, n);
    p[n] = '\0';
  }
  return p;
}

static void free_blocks(uow_arena_block *block) {
  while (block) {
    uow_arena_block *next = block->next;
    uow__free(block);
    block = next;
  }
}

void uow__arena_free(uow_arena *arena) {
  free_blocks(arena->head);
  free_blocks(arena->spare);
  uow__arena_init(arena);
}

void uow__arena_recycle(uow_arena *arena, size_t keep) {
  /* Newest blocks first: they are the biggest. */
  uow_arena_block *block = arena->head, *spare = arena->spare;
  size_t kept = 0;
  for (uow_arena_block *s = spare; s; s = s->next)
    kept += s->size;
  while (block) {
    uow_arena_block *next = block->next;
    if (kept + block->size <= keep) {
      kept += block->size;
      block->next = spare;
      spare = block;
    } else {
      uow__free(block);
    }
    block = next;
  }
  arena->head = NULL;
  arena->spare = spare;
  arena->next_size = ARENA_FIRST_BLOCK;
}

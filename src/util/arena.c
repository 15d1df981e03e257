/*
 * arena.c - unit-lifetime memory. A unit allocates its tracked objects,
 * snapshots and loaded strings here and frees them all at once at uow_end(),
 * which is both faster than one malloc per value and leak-proof.
 */
#include <string.h>

#include "util.h"

struct uow_arena_block {
  uow_arena_block *next;
  size_t size;
  bool paged; /* see uow__big_alloc */
  _Alignas(16) unsigned char data[];
};

/* Block sizes, their header included: from ARENA_FIRST_BLOCK, doubling up to
 * ARENA_LAST_SMALL, then UOW_HUGE, the size of a huge page (see
 * uow__big_alloc): a unit past 256 KiB takes its memory 2 MiB at a time. A
 * unit that big is loading or making objects by the thousand; its next 2 MiB
 * then cost one page fault, not 512 (a 20,000-row insert ran 5% faster than
 * with huge pages from its second megabyte on). */
enum { ARENA_FIRST_BLOCK = 4096, ARENA_LAST_SMALL = 128 << 10 };

void uow__arena_init(uow_arena *arena) {
  arena->next = arena->limit = NULL;
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
  /* A block of whole pages, the header in the first: no page mapped for a
   * few bytes over. A piece bigger than the next block gets one its size. */
  size_t bytes = arena->next_size;
  if (bytes - sizeof(uow_arena_block) < need)
    bytes = sizeof(uow_arena_block) + need;
  /* A big block is used page after page, soon: its pages come in place. */
  bool paged;
  uow_arena_block *block = uow__big_alloc(&bytes, false, &paged);
  if (!block)
    return NULL;
  block->size = bytes - sizeof(*block);
  block->paged = paged;
  if (arena->next_size < ARENA_LAST_SMALL)
    arena->next_size *= 2;
  else
    arena->next_size = UOW_HUGE;
  return block;
}

void *uow__arena_alloc_block(uow_arena *arena, size_t size, bool aligned) {
  if (size == 0) /* a piece all the same, as callers tell NULL from memory */
    return aligned ? uow__arena_alloc_raw(arena, 1) : uow__arena_bytes(arena, 1);
  size_t need = aligned ? (size + 15) & ~(size_t)15 : size;
  if (need < size || need > SIZE_MAX - sizeof(uow_arena_block))
    return NULL; /* the block's size would wrap around */
  uow_arena_block *block = arena_block(arena, need);
  if (!block)
    return NULL;
  block->next = arena->head;
  arena->head = block;
  arena->next = block->data;
  arena->limit = block->data + block->size;
  if (!aligned)
    return arena->limit -= need;
  arena->next += need;
  return block->data;
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

static void free_block(uow_arena_block *block) {
  uow__big_free(block, sizeof(*block) + block->size, block->paged);
}

static void free_blocks(uow_arena_block *block) {
  while (block) {
    uow_arena_block *next = block->next;
    free_block(block);
    block = next;
  }
}

void uow__arena_free(uow_arena *arena) {
  free_blocks(arena->head);
  free_blocks(arena->spare);
  uow__arena_init(arena);
}

/* Moves the blocks of `list` to `*spare` while they fit in `keep` bytes in
 * all, and frees the others. */
static void keep_blocks(uow_arena_block *list, uow_arena_block **spare, size_t *kept, size_t keep) {
  while (list) {
    uow_arena_block *next = list->next;
    if (*kept + list->size <= keep) {
      *kept += list->size;
      list->next = *spare;
      *spare = list;
    } else {
      free_block(list);
    }
    list = next;
  }
}

void uow__arena_recycle(uow_arena *arena, size_t keep) {
  /* Spare blocks first (they are kept already), then the blocks in use,
   * newest first: they are the biggest. */
  uow_arena_block *spare = NULL;
  size_t kept = 0;
  keep_blocks(arena->spare, &spare, &kept, keep);
  keep_blocks(arena->head, &spare, &kept, keep);
  arena->next = arena->limit = NULL;
  arena->head = NULL;
  arena->spare = spare;
  arena->next_size = ARENA_FIRST_BLOCK;
}

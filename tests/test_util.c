/*
 * test_util.c - the library's own memory: the unit arena (src/util/arena.c).
 * Its blocks grow from 4 KiB to 128 KiB, then come 2 MiB at a time; blocks
 * of 64 KiB and more come from mmap with their pages in place when the C
 * library's allocator is in use (those of 2 MiB on transparent huge pages
 * where the system has them), and from the application's allocator, like
 * every other byte, when one is set with uow_set_allocator. The hash map's
 * tables do the same. A list marked `huge` (a unit's records) moves past
 * 64 KiB to 2 MiB of huge pages, touched as it fills.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sys/prctl.h>

#include "uow.h"
#include "util/util.h"

/* ---- a counting allocator: live bytes and calls ---- */

typedef struct {
  size_t size;
  _Alignas(16) unsigned char data[];
} counted;

static size_t live_bytes, calls;

static void *counting_malloc(size_t size) {
  counted *c = malloc(sizeof(*c) + size);
  if (!c)
    return NULL;
  c->size = size;
  live_bytes += size;
  calls++;
  return c->data;
}

static void *counting_realloc(void *p, size_t size) {
  if (!p)
    return counting_malloc(size);
  counted *c = (counted *)((unsigned char *)p - offsetof(counted, data));
  size_t old = c->size;
  counted *n = realloc(c, sizeof(*n) + size);
  if (!n)
    return NULL;
  n->size = size;
  live_bytes = live_bytes - old + size;
  calls++;
  return n->data;
}

static void counting_free(void *p) {
  if (!p)
    return;
  counted *c = (counted *)((unsigned char *)p - offsetof(counted, data));
  live_bytes -= c->size;
  free(c);
}

static void use_counting_allocator(void) {
  live_bytes = calls = 0;
  assert_int_equal(uow_set_allocator(counting_malloc, counting_realloc, counting_free), UOW_OK);
}

static int restore_allocator(void **state) {
  (void)state;
  return uow_set_allocator(NULL, NULL, NULL);
}

/* ---- filling an arena ---- */

enum { PIECES = 3000 };

/* Piece i: sizes from 1 byte to ~5 KiB, and every 500th piece 300 KiB (bigger
 * than a block of its own), about 9 MiB in all. */
static size_t piece_size(size_t i) { return i % 500 == 499 ? 300u << 10 : 1 + (i * 7919) % 5000; }

static unsigned char piece_byte(size_t i, size_t j) { return (unsigned char)(i * 31 + j); }

/* Allocates pieces 0..n-1, checks each comes zeroed and 16-byte aligned, and
 * writes its bytes. */
static void fill(uow_arena *arena, unsigned char **pieces, size_t n) {
  for (size_t i = 0; i < n; i++) {
    size_t size = piece_size(i);
    unsigned char *p = uow__arena_alloc(arena, size);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 16, 0);
    unsigned char any = 0;
    for (size_t j = 0; j < size; j++) {
      any |= p[j]; /* zeroed, even in a block used before */
      p[j] = piece_byte(i, j);
    }
    assert_int_equal(any, 0);
    pieces[i] = p;
  }
}

static void check(unsigned char **pieces, size_t n) {
  for (size_t i = 0; i < n; i++) {
    size_t wrong = 0;
    for (size_t j = 0; j < piece_size(i); j++)
      wrong += pieces[i][j] != piece_byte(i, j);
    assert_int_equal(wrong, 0);
  }
}

/* A fresh arena filled with every piece, through the counting allocator. */
static void fill_counted(uow_arena *arena, unsigned char **pieces) {
  use_counting_allocator();
  uow__arena_init(arena);
  fill(arena, pieces, PIECES);
}

/* ---- tests ---- */

static void arena_keeps_every_byte_of_small_and_big_blocks(void **state) {
  (void)state;
  static unsigned char *pieces[PIECES];
  uow_arena arena;
  uow__arena_init(&arena);
  fill(&arena, pieces, PIECES);
  check(pieces, PIECES);
  /* Recycled blocks (mapped ones among them) serve the next fill, zeroed. */
  uow__arena_recycle(&arena, SIZE_MAX);
  fill(&arena, pieces, PIECES);
  check(pieces, PIECES);
  uow__arena_recycle(&arena, 0);
  fill(&arena, pieces, PIECES);
  check(pieces, PIECES);
  uow__arena_free(&arena);
}

static void arena_takes_every_block_from_the_application_allocator(void **state) {
  (void)state;
  static unsigned char *pieces[PIECES];
  uow_arena arena;
  fill_counted(&arena, pieces);
  size_t total = 0;
  for (size_t i = 0; i < PIECES; i++)
    total += piece_size(i);
  assert_true(live_bytes >= total); /* nothing came from elsewhere */
  uow__arena_free(&arena);
  assert_int_equal(live_bytes, 0);
}

static void arena_recycle_reuses_kept_blocks_and_frees_the_rest(void **state) {
  (void)state;
  static unsigned char *pieces[PIECES];
  uow_arena arena;
  fill_counted(&arena, pieces);
  size_t held = live_bytes;

  /* Keep all: a fill of half as much asks the allocator for nothing. */
  uow__arena_recycle(&arena, SIZE_MAX);
  size_t before = calls;
  fill(&arena, pieces, PIECES / 2);
  check(pieces, PIECES / 2);
  assert_int_equal(calls, before);
  assert_int_equal(live_bytes, held);

  uow__arena_recycle(&arena, 1 << 20); /* keep at most 1 MiB */
  assert_true(live_bytes <= (1u << 20) + 4096);
  assert_true(live_bytes > 0);

  uow__arena_recycle(&arena, 0);
  assert_int_equal(live_bytes, 0);
  uow__arena_free(&arena);
}

static void arena_refuses_sizes_that_would_wrap_around(void **state) {
  (void)state;
  uow_arena arena;
  uow__arena_init(&arena);
  assert_null(uow__arena_alloc(&arena, SIZE_MAX));
  assert_null(uow__arena_alloc(&arena, SIZE_MAX - 8));
  assert_non_null(uow__arena_alloc(&arena, 16)); /* still usable */
  /* With room left in a block, the inline path refuses them too. */
  assert_null(uow__arena_alloc(&arena, SIZE_MAX));
  assert_null(uow__arena_alloc_raw(&arena, SIZE_MAX - 8));
  assert_non_null(uow__arena_alloc(&arena, 16));
  uow__arena_free(&arena);
}

static void arena_gives_a_distinct_piece_for_zero_bytes_without_a_block_per_piece(void **state) {
  (void)state;
  use_counting_allocator();
  uow_arena arena;
  uow__arena_init(&arena);
  void *first = uow__arena_alloc_raw(&arena, 0); /* no block yet */
  assert_non_null(first);
  size_t blocks = calls;
  void *second = uow__arena_alloc_raw(&arena, 0);
  assert_non_null(second);
  assert_ptr_not_equal(first, second);
  for (int i = 0; i < 100; i++)
    assert_non_null(uow__arena_dup(&arena, NULL, 0));
  assert_int_equal(calls, blocks); /* all in the first block */
  uow__arena_free(&arena);
  assert_int_equal(live_bytes, 0);
}

/* Text goes at the top of a block's free part and aligned pieces at its
 * bottom, so neither pads the other: 100 strings of 23 bytes and 100 pieces
 * of 16 share the first 4 KiB block (strings padded to 32 bytes would not
 * fit). Every piece stays 16-byte aligned and nothing overlaps. */
static void arena_packs_text_and_aligned_pieces_into_one_block(void **state) {
  (void)state;
  enum { N = 100 };
  use_counting_allocator();
  uow_arena arena;
  uow__arena_init(&arena);
  char *text[N];
  unsigned char *piece[N];
  char want[32];
  for (int i = 0; i < N; i++) {
    snprintf(want, sizeof(want), "user%06d@example.com", i);
    assert_non_null(text[i] = uow__arena_strndup(&arena, want, strlen(want)));
    assert_non_null(piece[i] = uow__arena_alloc_raw(&arena, 16));
    assert_int_equal((uintptr_t)piece[i] % 16, 0);
    memset(piece[i], i, 16);
  }
  assert_int_equal(calls, 1);
  for (int i = 0; i < N; i++) {
    snprintf(want, sizeof(want), "user%06d@example.com", i);
    assert_string_equal(text[i], want);
    for (int b = 0; b < 16; b++)
      assert_int_equal(piece[i][b], i);
  }
  /* Empty text is a piece of its own too, in the same block. */
  char *empty = uow__arena_strndup(&arena, "", 0);
  assert_non_null(empty);
  assert_string_equal(empty, "");
  assert_ptr_not_equal(empty, uow__arena_strndup(&arena, "", 0));
  assert_int_equal(calls, 1);
  uow__arena_free(&arena);
  assert_int_equal(live_bytes, 0);
}

/* The mapping of /proc/self/smaps that holds `addr`: its bounds, and
 * whether it may take transparent huge pages (THPeligible). False when the
 * system has no such file. */
static bool mapping_of(uintptr_t addr, uintptr_t *start, uintptr_t *end, int *thp) {
  FILE *f = fopen("/proc/self/smaps", "r");
  if (!f)
    return false;
  char line[512];
  bool found = false;
  *thp = -1;
  while (fgets(line, sizeof(line), f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) { /* a mapping's first line */
      if (found)
        break; /* the next mapping */
      found = addr >= lo && addr < hi;
      *start = lo;
      *end = hi;
    } else if (found) {
      sscanf(line, "THPeligible: %d", thp);
    }
  }
  fclose(f);
  return found;
}

/* Whether the system gives huge pages to memory marked with MADV_HUGEPAGE,
 * and this process has not been told to take none (PR_SET_THP_DISABLE). */
static bool huge_pages_on_request(void) {
  if (prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1)
    return false;
  FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
  char mode[128] = "";
  if (f) {
    if (!fgets(mode, sizeof(mode), f))
      mode[0] = '\0';
    fclose(f);
  }
  return strstr(mode, "[always]") || strstr(mode, "[madvise]");
}

/* A unit past 256 KiB takes 2 MiB blocks: each a mapping of its own that
 * starts on a 2 MiB boundary (the slack mapped to find one is given back),
 * marked for huge pages, whole and writable. */
static void arena_takes_memory_past_256_kib_in_2mib_huge_page_blocks(void **state) {
  (void)state;
  uow_arena arena;
  uow__arena_init(&arena);
  unsigned char *last = NULL;
  for (size_t used = 0; used < (3u << 20); used += 4000)
    assert_non_null(last = uow__arena_alloc_raw(&arena, 4000));
  uintptr_t block = (uintptr_t)arena.head;
  assert_int_equal(block % UOW_HUGE, 0);
  assert_true((uintptr_t)last > block && (uintptr_t)last < block + UOW_HUGE);
  memset(last, 0xa5, block + UOW_HUGE - (uintptr_t)last); /* up to its very end, ours */
  uintptr_t start, end;
  int thp;
  if (mapping_of(block, &start, &end, &thp)) {
    assert_true(start <= block && end >= block + UOW_HUGE);
    assert_int_equal((end - start) % UOW_HUGE, 0); /* no slack left mapped around it */
    if (huge_pages_on_request() && thp != -1)      /* -1: a kernel without the field */
      assert_int_equal(thp, 1);
  }
  uow__arena_free(&arena);
}

/* ---- lists ---- */

/* Appends `from`..`to` - 1 to a list of 64-bit items. */
static void push_items(uow_vec *list, uint64_t from, uint64_t to) {
  for (uint64_t i = from; i < to; i++) {
    uint64_t *item = uow__vec_push(list, sizeof(*item));
    assert_non_null(item);
    *item = i * 7919;
  }
}

static void assert_items(const uow_vec *list, uint64_t n) {
  assert_int_equal(list->len, n);
  for (uint64_t i = 0; i < n; i++)
    assert_int_equal(UOW_VEC_AT(list, uint64_t, i), i * 7919);
}

/* Growing to 64 KiB, a huge list moves, items and all, to a mapping of
 * 2 MiB on a 2 MiB boundary, marked for huge pages; past 2 MiB, to one of
 * 4 MiB. */
static void huge_list_moves_at_64_kib_to_2mib_mappings_keeping_its_items(void **state) {
  (void)state;
  uow_vec list = {.huge = true};
  push_items(&list, 0, 4096); /* 32 KiB: still the allocator's */
  assert_int_equal(list.mapped, 0);
  push_items(&list, 4096, 100000);
  assert_int_equal(list.mapped, UOW_HUGE);
  assert_int_equal(list.cap, UOW_HUGE / sizeof(uint64_t));
  assert_int_equal((uintptr_t)list.items % UOW_HUGE, 0);
  assert_items(&list, 100000);
  uintptr_t start, end;
  int thp;
  if (mapping_of((uintptr_t)list.items, &start, &end, &thp)) {
    assert_int_equal((end - start) % UOW_HUGE, 0);
    if (huge_pages_on_request() && thp != -1)
      assert_int_equal(thp, 1);
  }
  push_items(&list, 100000, 300000); /* 2.4 MiB */
  assert_int_equal(list.mapped, 2 * UOW_HUGE);
  assert_items(&list, 300000);
  assert_int_equal(uow__vec_reserve(&list, 600000, sizeof(uint64_t)), UOW_OK);
  assert_int_equal(list.mapped, 3 * UOW_HUGE); /* 4.6 MiB, rounded up to 6 */
  assert_items(&list, 300000);
  uow__vec_free(&list);
  assert_null(list.items);
  assert_int_equal(list.mapped, 0);
  assert_true(list.huge); /* still marked, for the next use */
}

/* An application's allocator sees every byte of a huge list, and a list not
 * marked never leaves the allocator. */
static void huge_list_takes_every_byte_from_the_application_allocator(void **state) {
  (void)state;
  use_counting_allocator();
  uow_vec huge = {.huge = true}, plain = {0};
  push_items(&huge, 0, 100000);
  push_items(&plain, 0, 100000);
  assert_int_equal(huge.mapped, 0);
  assert_int_equal(plain.mapped, 0);
  assert_int_equal(live_bytes, (huge.cap + plain.cap) * sizeof(uint64_t));
  assert_items(&huge, 100000);
  uow__vec_free(&huge);
  uow__vec_free(&plain);
  assert_int_equal(live_bytes, 0);
  assert_int_equal(restore_allocator(NULL), UOW_OK);
  push_items(&plain, 0, 100000);
  assert_int_equal(plain.mapped, 0);
  uow__vec_free(&plain);
}

/* ---- the hash map ---- */

enum { ENTRIES = 100000 };

static bool same_value(const void *value, const void *key) { return value == key; }

/* Puts entry i, the address of values[i], for every i. */
static void put_entries(uow_map *map, char *values) {
  for (size_t i = 0; i < ENTRIES; i++)
    assert_int_equal(uow__map_put(map, uow__hash_u64(i, 7), &values[i]), UOW_OK);
  assert_int_equal(map->len, ENTRIES);
}

/* Enough entries that the table grows past the size that takes fresh pages
 * (100,000 entries: a 4 MiB table). */
static void map_round_trip(void) {
  static char values[ENTRIES];
  uow_map map = {0};
  put_entries(&map, values);
  for (size_t i = 0; i < ENTRIES; i += 2)
    assert_true(uow__map_remove(&map, uow__hash_u64(i, 7), &values[i]));
  size_t found = 0, wrong = 0;
  for (size_t i = 0; i < ENTRIES; i++) {
    void *v = uow__map_get(&map, uow__hash_u64(i, 7), same_value, &values[i]);
    found += v != NULL;
    wrong += v != NULL && (i % 2 == 0 || v != &values[i]);
  }
  assert_int_equal(found, ENTRIES / 2);
  assert_int_equal(wrong, 0);
  uow__map_free(&map);
  assert_null(map.slots);
}

static void map_finds_every_entry_of_a_big_table(void **state) {
  (void)state;
  map_round_trip();
}

static void map_takes_every_table_from_the_application_allocator(void **state) {
  (void)state;
  use_counting_allocator();
  static char values[ENTRIES];
  uow_map map = {0};
  put_entries(&map, values);
  assert_true(live_bytes >= map.cap * sizeof(uow_map_entry));
  uow__map_free(&map);
  assert_int_equal(live_bytes, 0);
  map_round_trip(); /* and works the same */
}

/* Byte keys (text keys, statement keys) hash to every low bit the table
 * uses: 20,000 keys that differ only in a few digits, like generated ones,
 * fill 1,024 buckets evenly; keys that differ in a trailing zero byte, in
 * length or in the seed hash apart. */
static void hash_of_bytes_spreads_similar_keys_and_tells_lengths_apart(void **state) {
  (void)state;
  enum { KEYS = 20000, BUCKETS = 1024 };
  static unsigned counts[BUCKETS];
  char key[32];
  for (int i = 0; i < KEYS; i++) {
    int n = snprintf(key, sizeof(key), "learner-%05d", i);
    counts[uow__hash_bytes(key, (size_t)n, 0) % BUCKETS]++;
  }
  unsigned most = 0, empty = 0;
  for (int b = 0; b < BUCKETS; b++) {
    most = counts[b] > most ? counts[b] : most;
    empty += counts[b] == 0;
  }
  /* About 19.5 a bucket; a uniform hash gives a fullest bucket near 35. */
  assert_true(most <= 45);
  assert_int_equal(empty, 0);
  assert_true(uow__hash_bytes("a", 1, 0) != uow__hash_bytes("a\0", 2, 0));
  assert_true(uow__hash_bytes("", 0, 0) != uow__hash_bytes("\0", 1, 0));
  assert_true(uow__hash_bytes("abcdefgh", 8, 0) != uow__hash_bytes("abcdefgh", 8, 1));
  assert_true(uow__hash_bytes("abcdefghi", 9, 0) != uow__hash_bytes("abcdefghj", 9, 0));
}

int main(int argc, char **argv) {
  if (argc > 1)
    cmocka_set_test_filter(argv[1]);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(arena_keeps_every_byte_of_small_and_big_blocks),
      cmocka_unit_test_teardown(arena_takes_every_block_from_the_application_allocator,
                                restore_allocator),
      cmocka_unit_test_teardown(arena_recycle_reuses_kept_blocks_and_frees_the_rest,
                                restore_allocator),
      cmocka_unit_test(arena_refuses_sizes_that_would_wrap_around),
      cmocka_unit_test(arena_takes_memory_past_256_kib_in_2mib_huge_page_blocks),
      cmocka_unit_test_teardown(
          arena_gives_a_distinct_piece_for_zero_bytes_without_a_block_per_piece, restore_allocator),
      cmocka_unit_test_teardown(arena_packs_text_and_aligned_pieces_into_one_block,
                                restore_allocator),
      cmocka_unit_test(huge_list_moves_at_64_kib_to_2mib_mappings_keeping_its_items),
      cmocka_unit_test_teardown(huge_list_takes_every_byte_from_the_application_allocator,
                                restore_allocator),
      cmocka_unit_test(map_finds_every_entry_of_a_big_table),
      cmocka_unit_test(hash_of_bytes_spreads_similar_keys_and_tells_lengths_apart),
      cmocka_unit_test_teardown(map_takes_every_table_from_the_application_allocator,
                                restore_allocator),
  };
  return cmocka_run_group_tests_name("util", tests, NULL, NULL);
}

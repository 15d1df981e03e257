/*
 * map.c - an open-addressing hash map (linear probing, backward-shift
 * deletion). It stores caller-owned values and compares them through a
 * callback, so the identity map and the statement caches share one table
 * without copying keys.
 */
#include <string.h>

#include "util.h"

void *uow__map_get(const uow_map *map, uint64_t hash, uow_map_eq eq, const void *key) {
  if (!map->cap)
    return NULL;
  size_t mask = map->cap - 1;
  for (size_t i = hash & mask;; i = (i + 1) & mask) {
    const uow_map_entry *slot = &map->slots[i];
    if (!slot->value)
      return NULL;
    if (slot->hash == hash && eq(slot->value, key))
      return slot->value;
  }
}

static void map_insert(uow_map_entry *slots, size_t cap, uint64_t hash, void *value) {
  size_t mask = cap - 1;
  size_t i = hash & mask;
  while (slots[i].value)
    i = (i + 1) & mask;
  slots[i].hash = hash;
  slots[i].value = value;
}

int uow__map_put(uow_map *map, uint64_t hash, void *value) {
  if ((map->len + 1) * 4 > map->cap * 3) {
    size_t cap = map->cap ? map->cap * 2 : 16;
    if (cap > SIZE_MAX / sizeof(uow_map_entry))
      return UOW_ENOMEM;
    size_t bytes = cap * sizeof(uow_map_entry);
    bool paged;
    uow_map_entry *slots = uow__big_alloc(&bytes, true, &paged);
    if (!slots)
      return UOW_ENOMEM;
    for (size_t i = 0; i < map->cap; i++)
      if (map->slots[i].value)
        map_insert(slots, cap, map->slots[i].hash, map->slots[i].value);
    uow__big_free(map->slots, map->cap * sizeof(uow_map_entry), map->paged);
    map->slots = slots;
    map->cap = cap;
    map->paged = paged;
  }
  map_insert(map->slots, map->cap, hash, value);
  map->len++;
  return UOW_OK;
}

bool uow__map_remove(uow_map *map, uint64_t hash, const void *value) {
  if (!map->cap)
    return false;
  size_t mask = map->cap - 1;
  size_t i = hash & mask;
  while (map->slots[i].value != value) {
    if (!map->slots[i].value)
      return false;
    i = (i + 1) & mask;
  }
  /* Shift following entries back so that probing never meets a hole. */
  size_t hole = i;
  for (size_t j = (i + 1) & mask; map->slots[j].value; j = (j + 1) & mask) {
    size_t home = map->slots[j].hash & mask;
    bool movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
    if (movable) {
      map->slots[hole] = map->slots[j];
      hole = j;
    }
  }
  map->slots[hole].value = NULL;
  map->slots[hole].hash = 0;
  map->len--;
  return true;
}

void uow__map_free(uow_map *map) {
  uow__big_free(map->slots, map->cap * sizeof(uow_map_entry), map->paged);
  memset(map, 0, sizeof(*map));
}

/* One word into the hash: a multiply carries each bit of `w` upwards, the
 * shift brings the high bits back down. */
static uint64_t hash_word(uint64_t h, uint64_t w) {
  h = (h ^ w) * 0xff51afd7ed558ccdull;
  return h ^ (h >> 32);
}

uint64_t uow__hash_bytes(const void *data, size_t len, uint64_t seed) {
  /* Eight bytes at a time (statement keys and SQL text run to tens of
   * bytes, which byte-wise FNV took a multiply each for), the tail as one
   * zero-padded word. The length goes in first, so that "a" and "a\0"
   * differ; the final avalanche reaches every bit the table uses. */
  const unsigned char *p = data;
  uint64_t h = hash_word(1469598103934665603ull ^ seed, len);
  for (; len >= 8; p += 8, len -= 8) {
    uint64_t w;
    memcpy(&w, p, sizeof(w));
    h = hash_word(h, w);
  }
  if (len) {
    uint64_t w = 0;
    memcpy(&w, p, len);
    h = hash_word(h, w);
  }
  return uow__hash_u64(h, 0);
}

uint64_t uow__hash_u64(uint64_t x, uint64_t seed) {
  /* The MurmurHash3 finaliser: every input bit reaches every output bit, so
   * the low bits the table uses differ even for aligned pointers. */
  x ^= seed;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

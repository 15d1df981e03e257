/*
 * value.c - moving between struct members and uow_value, the one currency
 * the core and the stores exchange. Change tracking compares values here.
 */
#include <string.h>

#include "uow/store.h"
#include "util.h"

uow_value uow_column_value(const uow_column *col, const void *object) {
  if (!col || !object)
    return uow_null();
  return uow__column_value(col, object);
}

bool uow__value_equal(const uow_value *a, const uow_value *b) {
  if (a->is_null || b->is_null)
    return a->is_null == b->is_null;
  switch (a->type) {
  case UOW_INT64:
    return a->v.i == b->v.i;
  case UOW_DOUBLE:
    /* Bitwise, so that NaN equals itself and -0.0 differs from 0.0. */
    return memcmp(&a->v.d, &b->v.d, sizeof(double)) == 0;
  case UOW_BOOL:
    return a->v.b == b->v.b;
  case UOW_TEXT:
  case UOW_BLOB:
    return a->v.bytes.size == b->v.bytes.size &&
           (a->v.bytes.size == 0 || memcmp(a->v.bytes.data, b->v.bytes.data, a->v.bytes.size) == 0);
  }
  return false;
}

size_t uow__entity_key_index(const uow_entity *entity) {
  for (size_t i = 0; i < entity->ncolumns; i++)
    if (entity->columns[i].flags & UOW_PRIMARY_KEY)
      return i;
  return 0;
}

uint64_t uow__value_hash(const uow_value *value) {
  if (value->type == UOW_TEXT || value->type == UOW_BLOB)
    return uow__hash_bytes(value->v.bytes.data, value->v.bytes.size, 0x75);
  uint64_t bits; /* the union's 8 bytes: int64, double or (zero-padded) bool */
  memcpy(&bits, &value->v.i, sizeof(bits));
  return uow__hash_u64(bits, 0x69);
}

bool uow__identifier_ok(const char *name) {
  if (!name || !*name || strlen(name) > 63)
    return false;
  for (const char *p = name; *p; p++) {
    bool letter = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_';
    bool digit = *p >= '0' && *p <= '9';
    if (!letter && !(digit && p != name))
      return false;
  }
  return true;
}

int uow__hex_digit(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/*
 * tracker.c - tracked objects: records that sit in front of the user's
 * structs, the identity map (one object per entity and key per unit),
 * snapshots that let a flush find what changed, and the undo log that lets a
 * savepoint roll those back. Loading rows from a store ends here too.
 */
#include <stdio.h>
#include <string.h>

#include "core/core.h"

uow_record *uow__record_of(uow_unit *unit, void *object) {
  if (!object)
    return NULL;
  uow_record *rec = (uow_record *)((char *)object - UOW_RECORD_HEADER);
  /* No tracked object of this unit otherwise: one of another unit, or memory
   * that is not a tracked object at all, is not in this unit's list. */
  if (rec->seq >= unit->records.len || UOW_VEC_AT(&unit->records, uow_record *, rec->seq) != rec)
    return NULL;
  return rec;
}

typedef struct identity_key {
  const uow_mapping *map;
  const uow_value *key;
} identity_key;

static bool identity_eq(const void *value, const void *key) {
  const uow_record *rec = value;
  const identity_key *k = key;
  if (rec->map != k->map)
    return false;
  const uow_column *col = &rec->map->entity->columns[rec->map->key];
  uow_value mine;
  uow__column_read(col, rec->snapshot, &mine);
  return uow__value_equal(&mine, k->key);
}

static uint64_t identity_hash(const uow_mapping *map, const uow_value *key) {
  return uow__value_hash(key) ^ ((uint64_t)map->index * 0x9e3779b97f4a7c15ull);
}

static uow_record *identity_find(uow_unit *unit, const uow_mapping *map, const uow_value *key,
                                 uint64_t hash) {
  identity_key k = {map, key};
  return uow__map_get(&unit->identity, hash, identity_eq, &k);
}

uow_record *uow__identity_get(uow_unit *unit, const uow_mapping *map, const uow_value *key) {
  /* A unit that only made new objects has none: no key to hash. */
  if (!unit->identity.len)
    return NULL;
  return identity_find(unit, map, key, identity_hash(map, key));
}

/* The identity map's hash of a record: its key as in its snapshot (a key
 * never changes, so every snapshot of the record has the same one). */
static uint64_t record_hash(const uow_record *rec) {
  uow_value key;
  uow__column_read(&rec->map->entity->columns[rec->map->key], rec->snapshot, &key);
  return identity_hash(rec->map, &key);
}

/* `hash`: record_hash(rec), known already. */
static int identity_put(uow_unit *unit, uow_record *rec, uint64_t hash) {
  int rc = uow__map_put(&unit->identity, hash, rec);
  if (rc == UOW_OK)
    rec->in_map = true;
  return rc;
}

int uow__identity_add(uow_unit *unit, uow_record *rec) {
  return identity_put(unit, rec, record_hash(rec));
}

void uow__identity_remove(uow_unit *unit, uow_record *rec) {
  if (rec->in_map)
    uow__map_remove(&unit->identity, record_hash(rec), rec);
  rec->in_map = false;
}

int uow__record_save(uow_unit *unit, uow_record *rec) {
  const uow_savepoint_mark *sp =
      &UOW_VEC_AT(&unit->savepoints, uow_savepoint_mark, unit->savepoints.len - 1);
  /* Created after the savepoint: rolling back drops it whole, nothing to save. */
  if (rec->undo_mark == sp->serial || rec->seq >= sp->records)
    return UOW_OK;
  uow_undo *undo = uow__vec_push(&unit->undo, sizeof(*undo));
  if (!undo)
    return UOW_ENOMEM;
  undo->record = rec;
  undo->state = rec->state;
  undo->snapshot = rec->snapshot;
  undo->in_map = rec->in_map;
  rec->undo_mark = sp->serial;
  return UOW_OK;
}

/* Point the text or blob member `col` of `image` at `copy`, which receives
 * `size` bytes of `data` and one more: a string's end, or the spare byte
 * that keeps an empty blob's pointer non-NULL (NULL means SQL NULL). */
static void bytes_put(const uow_column *col, void *image, const void *data, size_t size,
                      char *copy) {
  if (size)
    memcpy(copy, data, size);
  copy[size] = '\0';
  char *member = (char *)image + col->offset;
  if (col->type == UOW_TEXT) {
    memcpy(member, &copy, sizeof(copy));
  } else {
    uow_blob blob = {copy, size};
    memcpy(member, &blob, sizeof(blob));
  }
}

/* bytes_put into a new piece of the unit's memory: text wherever it fits,
 * blob bytes 16-byte aligned, as uow_blobdup gives them. */
static int bytes_dup(uow_unit *unit, const uow_column *col, void *image, const void *data,
                     size_t size) {
  char *copy = size == SIZE_MAX        ? NULL
               : col->type == UOW_TEXT ? uow__arena_bytes(&unit->arena, size + 1)
                                       : uow__arena_alloc_raw(&unit->arena, size + 1);
  if (!copy)
    return UOW_ENOMEM;
  bytes_put(col, image, data, size, copy);
  return UOW_OK;
}

/* Copy a text or blob member's bytes into the unit so the copy outlives the row. */
static int copy_bytes(uow_unit *unit, const uow_column *col, void *object) {
  if (col->type != UOW_TEXT && col->type != UOW_BLOB)
    return UOW_OK;
  uow_value now = uow__column_value(col, object);
  return now.is_null ? UOW_OK : bytes_dup(unit, col, object, now.v.bytes.data, now.v.bytes.size);
}

int uow__record_snapshot(uow_unit *unit, uow_record *rec) {
  const uow_entity *e = rec->map->entity;
  void *snapshot = uow__arena_dup(&unit->arena, uow__record_object(rec), e->size);
  if (!snapshot)
    return UOW_ENOMEM;
  for (size_t i = 0; i < e->ncolumns; i++)
    if (copy_bytes(unit, &e->columns[i], snapshot))
      return UOW_ENOMEM;
  rec->snapshot = snapshot;
  return UOW_OK;
}

int uow__member_set(uow_unit *unit, const uow_column *col, void *object, const uow_value *value) {
  char *member = (char *)object + col->offset;
  switch (col->type) {
  case UOW_INT64: {
    int64_t i = value->is_null ? 0 : value->v.i;
    memcpy(member, &i, sizeof(i));
    break;
  }
  case UOW_DOUBLE: {
    double d = value->is_null ? 0.0 : value->v.d;
    memcpy(member, &d, sizeof(d));
    break;
  }
  case UOW_BOOL: {
    bool b = value->is_null ? false : value->v.b;
    memcpy(member, &b, sizeof(b));
    break;
  }
  case UOW_TEXT: {
    if (!value->is_null)
      return bytes_dup(unit, col, object, value->v.bytes.data, value->v.bytes.size);
    char *s = NULL;
    memcpy(member, &s, sizeof(s));
    break;
  }
  case UOW_BLOB: {
    if (!value->is_null)
      return bytes_dup(unit, col, object, value->v.bytes.data, value->v.bytes.size);
    uow_blob blob = {NULL, 0};
    memcpy(member, &blob, sizeof(blob));
    break;
  }
  }
  return UOW_OK;
}

/* Whether a member differs between two images of the struct, by the rules of
 * uow__value_equal (see docs/guarantees.md) but read in place: a flush checks
 * every column of every loaded object, so no value is built and no length
 * measured. */
static bool member_differs(const uow_column *col, const void *now, const void *then) {
  const char *a = (const char *)now + col->offset;
  const char *b = (const char *)then + col->offset;
  bool nullable = col->flags & UOW_NULLABLE;
  switch (col->type) {
  case UOW_INT64:
    return memcmp(a, b, sizeof(int64_t)) != 0;
  case UOW_DOUBLE: {
    double x, y;
    memcpy(&x, a, sizeof(x));
    memcpy(&y, b, sizeof(y));
    if (nullable && x == 0.0 && y == 0.0) /* both NULL, whatever the sign */
      return false;
    return memcmp(&x, &y, sizeof(x)) != 0; /* bitwise: NaN equals itself */
  }
  case UOW_BOOL: {
    bool x, y;
    memcpy(&x, a, sizeof(x));
    memcpy(&y, b, sizeof(y));
    return x != y;
  }
  case UOW_TEXT: {
    const char *x, *y;
    memcpy(&x, a, sizeof(x));
    memcpy(&y, b, sizeof(y));
    if (x == y)
      return false;
    return !x || !y || strcmp(x, y) != 0;
  }
  case UOW_BLOB: {
    uow_blob x, y;
    memcpy(&x, a, sizeof(x));
    memcpy(&y, b, sizeof(y));
    if (!x.data || !y.data)
      return !x.data != !y.data;
    return x.size != y.size || (x.size && memcmp(x.data, y.data, x.size) != 0);
  }
  }
  return true;
}

uint64_t uow__record_changes(const uow_record *rec) {
  const uow_entity *e = rec->map->entity;
  const void *object = uow__record_object(rec);
  uint64_t changed = 0;
  for (size_t i = 0; i < e->ncolumns; i++)
    if (member_differs(&e->columns[i], object, rec->snapshot))
      changed |= UINT64_C(1) << i;
  return changed;
}

typedef struct load_ctx {
  uow_unit *unit;
  const uow_mapping *map;
  uow_vec *rows;
  uow_record *first;
} load_ctx;

/* The text and blob columns of `map` that are not NULL in `row`. */
static uint64_t row_bytes(const uow_mapping *map, const uow_value *row) {
  uint64_t bytes = 0;
  for (uint64_t m = map->bytes; m; m &= m - 1) {
    size_t i = (size_t)__builtin_ctzll(m);
    if (!row[i].is_null)
      bytes |= UINT64_C(1) << i;
  }
  return bytes;
}

/* Where the snapshot of a record loaded from a row begins, from the record. */
static size_t row_snapshot_at(const uow_mapping *map) {
  return (UOW_RECORD_HEADER + map->entity->size + 15) & ~(size_t)15;
}

/* What a record loaded from `row` needs after its object: the snapshot
 * (row_snapshot_at), then two copies of the values of the `bytes` columns
 * (the object's and the snapshot's), each with a terminating or spare byte;
 * 0 if that does not fit in a size_t. */
static size_t row_extra(const uow_mapping *map, const uow_value *row, uint64_t bytes) {
  size_t extra = row_snapshot_at(map) - UOW_RECORD_HEADER;
  for (uint64_t m = bytes; m; m &= m - 1) {
    size_t size = row[__builtin_ctzll(m)].v.bytes.size;
    if (size > SIZE_MAX / 4 || extra + 2 * (size + 1) < extra)
      return 0;
    extra += 2 * (size + 1);
  }
  return extra;
}

/* Copy the values of the `bytes` columns of `row` into `to` for the members
 * of `image`; returns the byte after the last copy. */
static char *row_bytes_to(const uow_entity *e, uint64_t bytes, void *image, const uow_value *row,
                          char *to) {
  for (uint64_t m = bytes; m; m &= m - 1) {
    size_t i = (size_t)__builtin_ctzll(m);
    bytes_put(&e->columns[i], image, row[i].v.bytes.data, row[i].v.bytes.size, to);
    to += row[i].v.bytes.size + 1;
  }
  return to;
}

/* A record for a row the unit does not have: the object, its snapshot and
 * their text and blob bytes come in one piece of the unit's memory. */
static uow_record *record_from_row(uow_unit *unit, const uow_mapping *map, const uow_value *row) {
  const uow_entity *e = map->entity;
  uint64_t bytes = row_bytes(map, row);
  size_t extra = row_extra(map, row, bytes);
  uow_record *rec = extra ? uow__record_new(unit, map, extra) : NULL;
  unit->mixed = true;
  if (!rec)
    return NULL;
  rec->state = UOW_REC_CLEAN;
  char *object = uow__record_object(rec);
  for (size_t i = 0; i < e->ncolumns; i++)
    if (!(bytes & (UINT64_C(1) << i)))
      uow__member_set(unit, &e->columns[i], object, &row[i]); /* no memory needed */
  char *snapshot = (char *)rec + row_snapshot_at(map);
  char *end = row_bytes_to(e, bytes, object, row, snapshot + e->size);
  memcpy(snapshot, object, e->size);
  row_bytes_to(e, bytes, snapshot, row, end);
  rec->snapshot = snapshot;
  return rec;
}

/* One row from the store: the unit's object if it has one, else a new tracked one. */
static int load_row(void *ctx, const uow_value *row) {
  load_ctx *load = ctx;
  uow_unit *unit = load->unit;
  const uow_mapping *map = load->map;
  uint64_t hash = identity_hash(map, &row[map->key]);
  uow_record *rec = identity_find(unit, map, &row[map->key], hash);
  if (!rec) {
    rec = record_from_row(unit, map, row);
    if (!rec)
      return UOW_ENOMEM;
    if (identity_put(unit, rec, hash))
      goto nomem;
  } else if (rec->state == UOW_REC_DELETED || rec->state == UOW_REC_GONE) {
    return UOW_OK;
  }
  if (!load->first)
    load->first = rec;
  if (load->rows) {
    void **slot = uow__vec_push(load->rows, sizeof(void *));
    if (!slot)
      return UOW_ENOMEM;
    *slot = uow__record_object(rec);
  }
  return UOW_OK;
nomem:
  /* The record stays in the arena but leaves the unit's list. */
  rec->state = UOW_REC_GONE;
  return UOW_ENOMEM;
}

int uow__load(uow_unit *unit, const uow_mapping *map, const char *where, const uow_value *params,
              size_t nparams, unsigned flags, uow_vec *rows, uow_record **first) {
  uow_unit_store *us;
  flags |= unit->opts.flags & UOW_FOR_UPDATE; /* a unit begun "for update" locks every read */
  int rc = uow__unit_join(unit, map->store, flags, &us);
  if (rc)
    return rc;
  load_ctx ctx = {unit, map, rows, NULL};
  uow_status st = {0, ""};
  rc = map->store->ops->read(us->conn, map->entity, where, params, nparams, flags, load_row, &ctx,
                             &st);
  if (rc == UOW_ENOMEM && !st.message[0])
    return uow__unit_fail(unit, rc, "read %s: out of memory", map->entity->name);
  if (rc)
    return uow__unit_store_error(unit, "read", us, &st);
  us->proven = true;
  if (first)
    *first = ctx.first;
  if (!rows && !ctx.first)
    return UOW_ENOTFOUND;
  return UOW_OK;
}

int uow__load_many(uow_unit *unit, uow_store *store, uow_load *loads, size_t n) {
  size_t m = 0;
  size_t first = n;
  for (size_t i = 0; i < n; i++) {
    if (!loads[i].answered && loads[i].map->store == store) {
      m++;
      first = first < n ? first : i;
    }
  }
  if (!m)
    return UOW_OK;
  unsigned every = unit->opts.flags & UOW_FOR_UPDATE; /* as in uow__load */
  uow_unit_store *us;
  /* The transaction begins as the first of these reads would begin it alone. */
  int rc = uow__unit_join(unit, store, loads[first].flags | every, &us);
  if (rc)
    return rc;
  uow_read *reads = uow__calloc(m, sizeof(*reads));
  load_ctx *ctxs = uow__calloc(m, sizeof(*ctxs));
  size_t *which = uow__calloc(m, sizeof(*which));
  if (!reads || !ctxs || !which) {
    rc = uow__unit_error(unit, UOW_ENOMEM, "fetch: out of memory");
    goto done;
  }
  for (size_t i = 0, j = 0; i < n; i++) {
    uow_load *load = &loads[i];
    if (load->answered || load->map->store != store)
      continue;
    ctxs[j] = (load_ctx){unit, load->map, load->find ? &load->rows : NULL, NULL};
    reads[j] = (uow_read){load->map->entity,   load->where, load->params, load->nparams,
                          load->flags | every, load_row,    &ctxs[j]};
    which[j++] = i;
  }
  const uow_store_ops *ops = store->ops;
  uow_status st = {0, ""};
  size_t failed = m;
  /* Only a table of ABI 3 or later has read_many: an ABI 2 one ends before it. */
  if (ops->abi >= 3 && ops->read_many) {
    rc = ops->read_many(us->conn, reads, m, &failed, &st);
  } else {
    for (failed = 0; failed < m; failed++) {
      const uow_read *r = &reads[failed];
      if ((rc = ops->read(us->conn, r->entity, r->where, r->params, r->nparams, r->flags, r->fn,
                          r->ctx, &st)))
        break;
    }
  }
  if (rc) {
    char what[160] = "fetch: read";
    if (failed < m) {
      uow_load *load = &loads[which[failed]];
      load->rc = rc;
      snprintf(what, sizeof(what), "fetch item %zu (%s %s): read", load->item,
               load->find ? "find" : "get", load->map->entity->name);
    }
    if (rc == UOW_ENOMEM && !st.message[0])
      rc = uow__unit_fail(unit, rc, "%s: out of memory", what);
    else
      rc = uow__unit_store_error(unit, what, us, &st);
    goto done;
  }
  us->proven = true;
  for (size_t j = 0; j < m; j++)
    loads[which[j]].first = ctxs[j].first;
done:
  uow__free(reads);
  uow__free(ctxs);
  uow__free(which);
  return rc;
}

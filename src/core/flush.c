/*
 * flush.c - turns tracked changes into store writes.
 *
 * Planning puts the work in the order DESIGN.md promises: inserts in creation
 * order with referenced (parent) objects first, then updates in key order,
 * then deletes with children first. Executing sends consecutive writes to one
 * store as one batch (one round trip on PostgreSQL), cutting a batch only when
 * the next write needs a key the store has not assigned yet or when the store
 * changes. At commit the last batch also carries the outbox rows and the
 * COMMIT itself, so a single-store unit commits in one round trip. A big
 * flush goes in slices (of FLUSH_SLICE writes where the store has write_ahead,
 * SLICE_LOCAL where it has not); a store with write_ahead keeps
 * one slice in flight while the next is made, so its server never waits for
 * the client between slices.
 *
 * uow_send is a flush of the new objects only, on the stores that write
 * ahead, whose last slice the unit keeps in flight: the next call to the
 * store reads its replies (a flush adopts it as its own slice ahead).
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#include "core/core.h"

/* Writes for one store, with the records they are for. */
typedef struct slice {
  uow_vec writes;   /* uow_write */
  uow_vec owners;   /* uow_record *, the record of each write (NULL: a row of the library's) */
  uow_vec replaced; /* uow_record *, the deleted record a write replaces, or NULL */
} slice;

typedef struct flush {
  uow_unit *unit;
  uow_arena scratch; /* values and outbox rows of the pending batch */
  uow_vec ops;       /* uow_record *, in execution order: inserts, updates, deletes */
  uow_record **op;   /* the operations to execute: ops.items, or the unit's records */
  size_t nops;       /* how many */
  size_t updates;    /* the index in op of the first update */
  size_t deletes;    /* the index in op of the first delete */
  uow_vec updating;  /* uow_record *, while planning: the updates, then put in ops */
  uow_vec deleting;  /* uow_record *, while planning: the deletes, then put in ops */
  uow_vec intending; /* uow_record *, the commit's: records of stores that take intents */
  uint64_t writers;  /* bit i: the operations write to the store of index i */
  uow_store *store;  /* the store of the pending batch and of the slice ahead */
  slice batch;       /* the pending batch, not sent yet */
  slice ahead;       /* sent with write_ahead, its outcome not known yet */
  unsigned mark;     /* visit: mark planning, mark + 1 planned, mark + 2 left to the flush */
  bool final;        /* the commit's flush: nothing reads the unit's records after it */
  bool send;         /* uow_send: only new objects, on stores that write ahead */
} flush;

/* Objects of a store that cannot join a transaction become intents at commit. */
static bool is_intent(const uow_record *rec) {
  return (rec->map->store->ops->caps & UOW_STORE_INTENTS) != 0;
}

/* Whether a store takes an INSERT as the object, reading its columns as it
 * binds them: no values copied first (uow_write.object). */
static bool takes_objects(const uow_store *store) {
  return store->ops->abi >= 5 && (store->ops->caps & UOW_STORE_OBJECTS);
}

/* Whether a store takes a slice and works through it while the core goes on. */
static bool writes_ahead(const uow_store *store) {
  return store->ops->abi >= 4 && store->ops->write_ahead;
}

static const uow_column *key_column(const uow_mapping *map) {
  return &map->entity->columns[map->key];
}

/* A key still to be set: NULL, or 0 for an integer. */
static bool value_unset(const uow_value *key) {
  return key->is_null || (key->type == UOW_INT64 && key->v.i == 0);
}

static bool key_unset(const uow_record *rec) {
  uow_value key = uow__column_value(key_column(rec->map), uow__record_object(rec));
  return value_unset(&key);
}

static void set_version(uow_record *rec, int64_t version) {
  const uow_column *col = &rec->map->entity->columns[rec->map->version];
  memcpy((char *)uow__record_object(rec) + col->offset, &version, sizeof(version));
}

static int64_t snapshot_version(const uow_record *rec) {
  return uow__column_value(&rec->map->entity->columns[rec->map->version], rec->snapshot).v.i;
}

/* ---- planning ---- */

/* An operation is its record; where it stands in f->ops says its kind (a
 * pointer per operation keeps a big flush's list small). Planning puts each
 * in `list` (f->ops for inserts) and notes the store it writes to. */
static inline int push_record(flush *f, uow_vec *list, uow_record *rec) {
  uow_record **at = uow__vec_push(list, sizeof(*at));
  if (!at)
    return uow__unit_fail(f->unit, UOW_ENOMEM, "flush: out of memory");
  *at = rec;
  return UOW_OK;
}

static inline int push_op(flush *f, uow_vec *list, uow_record *rec) {
  f->writers |= UINT64_C(1) << rec->map->store->index;
  return push_record(f, list, rec);
}

static uow_write_kind op_kind(const flush *f, size_t i) {
  return i < f->updates ? UOW_WRITE_INSERT : i < f->deletes ? UOW_WRITE_UPDATE : UOW_WRITE_DELETE;
}

/* The tracked parent a reference member points to, or NULL. */
static uow_record *parent_of(uow_unit *unit, const uow_record *rec, const uow_column *col,
                             int *rc) {
  *rc = UOW_OK;
  if (!col->references || col->parent_offset == UOW_NO_MEMBER)
    return NULL;
  void *parent;
  memcpy(&parent, (const char *)uow__record_object(rec) + col->parent_offset, sizeof(parent));
  if (!parent)
    return NULL;
  uow_record *prec = uow__record_of(unit, parent);
  if (!prec || prec->map->entity != col->references) {
    *rc = uow__unit_fail(unit, UOW_EINVAL,
                         "flush: %s.%s points to something that is not a %s of this unit",
                         rec->map->entity->name, col->name, col->references->name);
    return NULL;
  }
  return prec;
}

/* Depth-first: a new record's new parents are planned before it. A send
 * leaves a record of a store that cannot write ahead to the next flush, and
 * with it every record whose new parent it leaves. */
static int plan_insert(flush *f, uow_record *rec) {
  if (rec->visit == f->mark + 1 || rec->visit == f->mark + 2 || is_intent(rec))
    return UOW_OK;
  if (f->send && !writes_ahead(rec->map->store)) {
    rec->visit = f->mark + 2;
    return UOW_OK;
  }
  if (rec->visit == f->mark)
    return uow__unit_fail(f->unit, UOW_EINVAL,
                          "flush: new %s objects reference each other in a cycle; insert one "
                          "of them first with uow_flush()",
                          rec->map->entity->name);
  rec->visit = f->mark;
  const uow_entity *e = rec->map->entity;
  for (size_t i = 0; rec->map->parents && i < e->ncolumns; i++) {
    int rc;
    uow_record *parent = parent_of(f->unit, rec, &e->columns[i], &rc);
    if (rc)
      return rc;
    if (parent && parent->state == UOW_REC_NEW && (rc = plan_insert(f, parent)))
      return rc;
    if (parent && parent->state == UOW_REC_NEW && parent->visit == f->mark + 2) {
      rec->visit = f->mark + 2;
      return UOW_OK;
    }
    if (parent && parent->state == UOW_REC_GONE)
      return uow__unit_fail(f->unit, UOW_EINVAL, "flush: %s.%s points to a deleted %s", e->name,
                            e->columns[i].name, parent->map->entity->name);
  }
  rec->visit = f->mark + 1;
  return push_op(f, &f->ops, rec);
}

/* A new record that references nothing is planned where it stands, unless
 * it was planned already as another one's parent: no recursion, no walk of
 * its columns (a bulk load plans thousands of them). */
static int plan_new(flush *f, uow_record *rec) {
  if (rec->map->parents || f->send)
    return plan_insert(f, rec);
  if (rec->visit == f->mark + 1)
    return UOW_OK;
  rec->visit = f->mark + 1;
  return push_op(f, &f->ops, rec);
}

/* Updates and deletes go in key order (by mapping, then key in the snapshot),
 * so that concurrent units lock rows in one order. */
static int compare_keys(const uow_record *a, const uow_record *b) {
  const uow_mapping *ma = a->map, *mb = b->map;
  if (ma != mb)
    return ma->index < mb->index ? -1 : 1;
  uow_value ka = uow__column_value(key_column(ma), a->snapshot);
  uow_value kb = uow__column_value(key_column(mb), b->snapshot);
  if (ka.type == UOW_INT64)
    return ka.v.i < kb.v.i ? -1 : ka.v.i > kb.v.i;
  size_t n = ka.v.bytes.size < kb.v.bytes.size ? ka.v.bytes.size : kb.v.bytes.size;
  int c = n ? memcmp(ka.v.bytes.data, kb.v.bytes.data, n) : 0;
  return c ? c : (ka.v.bytes.size > kb.v.bytes.size) - (ka.v.bytes.size < kb.v.bytes.size);
}

static int compare_updates(const void *a, const void *b) {
  return compare_keys(*(uow_record *const *)a, *(uow_record *const *)b);
}

static int compare_deletes(const void *a, const void *b) {
  const uow_record *ra = *(uow_record *const *)a, *rb = *(uow_record *const *)b;
  if (ra->map->depth != rb->map->depth)
    return ra->map->depth > rb->map->depth ? -1 : 1;
  return compare_keys(ra, rb);
}

/* Sorts `list`, unless it is in order already (records loaded by one query
 * usually are), and puts it at the end of f->ops. */
static int append_sorted(flush *f, uow_vec *list, int (*compare)(const void *, const void *)) {
  size_t n = list->len;
  if (n == 0)
    return UOW_OK; /* and the list may not exist */
  uow_record **ops = list->items;
  for (size_t i = 1; i < n; i++) {
    if (compare(&ops[i - 1], &ops[i]) > 0) {
      qsort(ops, n, sizeof(*ops), compare);
      break;
    }
  }
  if (uow__vec_reserve(&f->ops, f->ops.len + n, sizeof(*ops)))
    return uow__unit_fail(f->unit, UOW_ENOMEM, "flush: out of memory");
  memcpy((uow_record **)f->ops.items + f->ops.len, ops, n * sizeof(*ops));
  f->ops.len += n;
  return UOW_OK;
}

/* Whether a loaded record may need an UPDATE: a column differs from the
 * snapshot, or a parent pointer is set, whose key is only copied into the
 * reference member when the update is executed. Most loaded records are
 * unchanged; leaving them out keeps planning and sorting proportional to
 * the changes. */
static bool may_update(const uow_record *rec) {
  const uow_mapping *map = rec->map;
  uint64_t changed = uow__record_changes(rec);
  if (map->version != SIZE_MAX)
    changed &= ~(UINT64_C(1) << map->version); /* the library owns the version */
  if (changed || !map->parents)
    return changed != 0;
  const uow_entity *e = map->entity;
  const char *object = uow__record_object(rec);
  for (size_t i = 0; i < e->ncolumns; i++) {
    const uow_column *col = &e->columns[i];
    void *parent;
    if (!col->references || col->parent_offset == UOW_NO_MEMBER)
      continue;
    memcpy(&parent, object + col->parent_offset, sizeof(parent));
    if (parent)
      return true;
  }
  return false;
}

/* A plain flush: the unit holds only new objects that reference nothing,
 * in stores that join transactions, and nothing was loaded, deleted or
 * flushed, so the identity map is empty (unit->mixed, which changes only
 * when the flush ends). Not a uow_send, which plans only part of them. */
static bool plain(const flush *f) { return !f->unit->mixed && !f->send; }

/* One pass over the records (each visit of a big unit's records costs a
 * cache miss per record): inserts go to f->ops as planned, updates and
 * deletes follow them, each sorted; the commit's flush also sets aside the
 * records that may become intents. */
static int plan(flush *f) {
  uow_unit *unit = f->unit;
  f->mark = unit->visit_serial += 3;
  uow_record **recs = unit->records.items;
  size_t n = unit->records.len;
  int rc = UOW_OK;
  if (plain(f)) {
    /* Every record is an INSERT, in creation order, and none needs a look
     * before it is executed. The list is the operations as it stands
     * (executing adds no record). */
    f->op = recs;
    f->nops = f->updates = f->deletes = n;
    f->writers |= unit->new_stores;
    return UOW_OK;
  }
  /* Every record before send_from was planned by a send: what is new there
   * now was left to the flush. A send plans nothing else. */
  for (size_t i = f->send ? unit->send_from : 0; i < n && !rc; i++) {
    uow_record *rec = recs[i];
    if (is_intent(rec))
      rc = f->final ? push_record(f, &f->intending, rec) : UOW_OK;
    else if (rec->state == UOW_REC_NEW)
      rc = plan_new(f, rec);
    else if (f->send)
      continue;
    else if (rec->state == UOW_REC_CLEAN && rec->snapshot && may_update(rec))
      rc = push_op(f, &f->updating, rec);
    else if (rec->state == UOW_REC_DELETED)
      rc = push_op(f, &f->deleting, rec);
  }
  f->updates = f->ops.len;
  if (!rc)
    rc = append_sorted(f, &f->updating, compare_updates);
  f->deletes = f->ops.len;
  if (!rc)
    rc = append_sorted(f, &f->deleting, compare_deletes);
  f->op = f->ops.items;
  f->nops = f->ops.len;
  return rc;
}

/* ---- executing ---- */

static inline int apply(flush *f, uow_record *rec, uow_record *replaced, const uow_write *w) {
  uow_unit *unit = f->unit;
  if (replaced) {
    if (uow__record_touch(unit, replaced))
      return UOW_ENOMEM;
    uow__identity_remove(unit, replaced);
    replaced->state = UOW_REC_GONE;
  }
  if (uow__record_touch(unit, rec))
    return UOW_ENOMEM;
  if (w->kind == UOW_WRITE_DELETE) {
    uow__identity_remove(unit, rec);
    rec->state = UOW_REC_GONE;
    return UOW_OK;
  }
  if (w->kind == UOW_WRITE_INSERT && !(w->columns & (UINT64_C(1) << rec->map->key))) {
    const uow_column *col = key_column(rec->map);
    memcpy((char *)uow__record_object(rec) + col->offset, &w->generated, sizeof(int64_t));
  }
  bool was_new = rec->state == UOW_REC_NEW;
  rec->state = UOW_REC_CLEAN;
  /* After the commit's flush the unit is committed or failed: no flush or
   * read follows that could use a snapshot or find the record by its key. */
  if (f->final)
    return UOW_OK;
  if (uow__record_snapshot(unit, rec))
    return UOW_ENOMEM;
  return was_new ? uow__identity_add(unit, rec) : UOW_OK;
}

/* The writes of `s` are done (or sent by uow_send): their records take
 * their new state. A slice uow_send left in flight has no owners: its
 * records took theirs when it was sent. */
static int apply_owners(flush *f, slice *s, bool commit) {
  for (size_t i = 0; i < s->owners.len; i++) {
    uow_record *rec = UOW_VEC_AT(&s->owners, uow_record *, i);
    /* After a COMMIT the writes are durable, so running out of memory here
     * must not fail the commit: a record left half updated is harmless, as
     * a committed unit only accepts uow_end. */
    if (rec &&
        apply(f, rec, UOW_VEC_AT(&s->replaced, uow_record *, i),
              &UOW_VEC_AT(&s->writes, uow_write, i)) &&
        !commit)
      return uow__unit_fail(f->unit, UOW_ENOMEM, "flush: out of memory after writing");
  }
  return UOW_OK;
}

static int apply_slice(flush *f, slice *s, bool commit) {
  int rc = apply_owners(f, s, commit);
  if (!rc)
    s->writes.len = s->owners.len = s->replaced.len = 0;
  return rc;
}

/* Writes sent or still to send on f->store. */
static bool pending(const flush *f) { return f->batch.writes.len || f->ahead.writes.len; }

/* Send the pending batch and complete the slice ahead; `commit` also commits
 * the store's transaction. With `ahead` (write_ahead), the batch is left in
 * flight instead and becomes the slice ahead, completed by the next call. */
static int send_batch(flush *f, bool commit, bool ahead) {
  uow_unit *unit = f->unit;
  if (!pending(f) && !commit)
    return UOW_OK;
  uow_unit_store *us;
  int rc = uow__unit_join(unit, f->store, 0, &us);
  if (rc)
    return rc;
  uow_status st = {0, ""};
  const uow_store_ops *ops = f->store->ops;
  uow_write *writes = f->batch.writes.items;
  size_t n = f->batch.writes.len;
  rc = ahead ? ops->write_ahead(us->conn, writes, n, &st)
             : ops->write(us->conn, writes, n, commit, &st);
  if (rc)
    return uow__unit_store_error(unit, commit ? "commit" : f->send ? "send" : "flush", us, &st);
  us->proven = true;
  us->wrote = us->wrote || pending(f);
  if ((rc = apply_slice(f, &f->ahead, commit)) || !ahead)
    return rc ? rc : apply_slice(f, &f->batch, commit);
  slice done = f->ahead;
  f->ahead = f->batch;
  f->batch = done;
  return UOW_OK;
}

static int run_batch(flush *f, bool commit) { return send_batch(f, commit, false); }

/* Send a full slice. Where the store can (write_ahead), it is left in flight
 * while the next one is made, and the slice sent before it completes. */
static int send_slice(flush *f) { return send_batch(f, false, writes_ahead(f->store)); }

/* A flush that failed between slices leaves one in flight: its outcome no
 * longer matters, but the store must be done with its writes before they
 * are freed. */
static void settle(flush *f) {
  if (!f->ahead.writes.len)
    return;
  uow_status st = {0, ""};
  f->store->ops->write(f->unit->stores[f->store->index].conn, NULL, 0, false, &st);
}

/* Writes per batch at most. A flush of more is sent in slices, and the
 * memory of a slice's values serves the next one: on PostgreSQL a round trip
 * per slice costs less than holding every row's values at once. A store
 * that works through a batch before it returns (no write_ahead: SQLite)
 * takes slices of SLICE_LOCAL: 100 writes (8.8 KiB) stay in the CPU's
 * first-level cache from being made to being bound, and take no fresh
 * pages (1000 took 22 page faults of a 20,000-row insert). */
enum { FLUSH_SLICE = 1000, SLICE_LOCAL = 100 };

static size_t slice_size(const uow_store *store) {
  return writes_ahead(store) ? FLUSH_SLICE : SLICE_LOCAL;
}

static int slice_reserve(slice *s, size_t room) {
  return uow__vec_reserve(&s->writes, room, sizeof(uow_write)) ||
         uow__vec_reserve(&s->owners, room, sizeof(uow_record *)) ||
         uow__vec_reserve(&s->replaced, room, sizeof(uow_record *));
}

static inline uow_write *batch_add(flush *f, uow_store *store, uow_record *owner,
                                   uow_record *replaced, uow_write_kind kind, const uow_entity *e,
                                   int *rc) {
  if (f->store != store && (*rc = run_batch(f, false)))
    return NULL;
  f->store = store;
  slice *s = &f->batch;
  /* The three lists grow together, by doubling (execute reserves a slice's
   * room up front; the commit's own rows come after it). */
  size_t i = s->writes.len;
  if ((i == s->writes.cap || i == s->owners.cap || i == s->replaced.cap) &&
      slice_reserve(s, i ? 2 * i : 8)) {
    *rc = uow__unit_fail(f->unit, UOW_ENOMEM, "flush: out of memory");
    return NULL;
  }
  s->writes.len = s->owners.len = s->replaced.len = i + 1;
  UOW_VEC_AT(&s->owners, uow_record *, i) = owner;
  UOW_VEC_AT(&s->replaced, uow_record *, i) = replaced;
  /* Member by member: zeroing the whole struct (memset or a compound
   * literal) compiles to a `rep stos`, slow to start for 88 bytes. */
  uow_write *w = &UOW_VEC_AT(&s->writes, uow_write, i);
  w->kind = kind;
  w->entity = e;
  w->values = NULL;
  w->columns = 0;
  w->key = (uow_value){.type = UOW_INT64};
  w->check_version = false;
  w->expected = w->generated = w->affected = 0;
  *rc = UOW_OK;
  return w;
}

static uow_value *object_values(flush *f, const uow_entity *e, const void *object) {
  uow_value *values = uow__arena_alloc_raw(&f->scratch, e->ncolumns * sizeof(*values));
  if (values)
    for (size_t i = 0; i < e->ncolumns; i++)
      uow__column_read(&e->columns[i], object, &values[i]);
  return values;
}

/* Copy parents' keys into reference members, sending the batch first when a
 * parent's key is still to be generated by it. */
static int copy_parent_keys(flush *f, uow_record *rec) {
  const uow_entity *e = rec->map->entity;
  for (size_t i = 0; i < e->ncolumns; i++) {
    const uow_column *col = &e->columns[i];
    int rc;
    uow_record *parent = parent_of(f->unit, rec, col, &rc);
    if (rc)
      return rc;
    if (!parent)
      continue;
    if (parent->state == UOW_REC_NEW && key_unset(parent) && (rc = run_batch(f, false)))
      return rc;
    const uow_column *pkey = key_column(parent->map);
    memcpy((char *)uow__record_object(rec) + col->offset,
           (char *)uow__record_object(parent) + pkey->offset, col->size);
  }
  return UOW_OK;
}

/* Inline: most records have no parent pointer to follow. */
static inline int resolve_parents(flush *f, uow_record *rec) {
  return rec->map->parents ? copy_parent_keys(f, rec) : UOW_OK;
}

static uint64_t all_columns(const uow_entity *e) {
  return e->ncolumns == 64 ? UINT64_MAX : (UINT64_C(1) << e->ncolumns) - 1;
}

/* The write of a new object, of `columns`: an INSERT, or an UPDATE of the
 * deleted record it replaces. Inline: a bulk load queues thousands. */
static inline int queue_new(flush *f, uow_record *rec, uow_record *replaced, uint64_t columns) {
  const uow_mapping *map = rec->map;
  const uow_entity *e = map->entity;
  int rc;
  uow_write *w = batch_add(f, map->store, rec, replaced,
                           replaced ? UOW_WRITE_UPDATE : UOW_WRITE_INSERT, e, &rc);
  if (!w)
    return rc;
  w->columns = columns & (replaced ? ~(UINT64_C(1) << map->key) : UINT64_MAX);
  void *object = uow__record_object(rec);
  if (!replaced && takes_objects(map->store)) {
    w->object = object;
    return UOW_OK;
  }
  w->values = object_values(f, e, object);
  if (replaced) {
    uow__column_read(key_column(map), replaced->snapshot, &w->key);
    w->check_version = map->version != SIZE_MAX;
    w->expected = w->check_version ? snapshot_version(replaced) : 0;
  }
  return w->values ? UOW_OK : uow__unit_fail(f->unit, UOW_ENOMEM, "flush: out of memory");
}

/* A key the store generates, still unset: left out of the INSERT. */
static uint64_t without_unset_key(const uow_record *rec, uint64_t columns) {
  const uow_mapping *map = rec->map;
  return (key_column(map)->flags & UOW_GENERATED) && key_unset(rec)
             ? columns & ~(UINT64_C(1) << map->key)
             : columns;
}

static int add_insert(flush *f, uow_record *rec) {
  const uow_mapping *map = rec->map;
  const uow_entity *e = map->entity;
  uow_value key;
  uow__column_read(key_column(map), uow__record_object(rec), &key);
  uow_record *replaced = value_unset(&key) ? NULL : uow__identity_get(f->unit, map, &key);
  if (replaced && replaced->state != UOW_REC_DELETED)
    return uow__unit_fail(f->unit, UOW_ECONSTRAINT,
                          "flush: a new %s has the key of a %s already in this unit", e->name,
                          e->name);
  uint64_t columns = all_columns(e);
  if (replaced) {
    /* delete + new with the same key: an update of the existing row, and the
     * delete planned for the replaced record must not be sent */
    replaced->visit = f->mark + 1;
    rec->snapshot = replaced->snapshot;
    columns = uow__record_changes(rec);
    rec->snapshot = NULL;
  }
  if (map->version != SIZE_MAX) {
    set_version(rec, replaced ? snapshot_version(replaced) + 1 : 1);
    columns |= UINT64_C(1) << map->version;
  }
  if (replaced && !columns) {
    /* identical, unversioned: nothing to send */
    uow_write none = {.kind = UOW_WRITE_UPDATE};
    if (apply(f, rec, replaced, &none))
      return uow__unit_fail(f->unit, UOW_ENOMEM, "flush: out of memory");
    return UOW_OK;
  }
  return queue_new(f, rec, replaced, replaced ? columns : without_unset_key(rec, columns));
}

/* add_insert for a plain flush (plain): no record of the unit has a key
 * that a new one could replace or clash with, so no lookup; every column
 * goes, but a generated key still unset. */
static int add_plain_insert(flush *f, uow_record *rec) {
  const uow_mapping *map = rec->map;
  if (map->version != SIZE_MAX)
    set_version(rec, 1);
  return queue_new(f, rec, NULL, without_unset_key(rec, all_columns(map->entity)));
}

static int add_update(flush *f, uow_record *rec) {
  const uow_mapping *map = rec->map;
  uint64_t changed = uow__record_changes(rec);
  if (map->version != SIZE_MAX)
    changed &= ~(UINT64_C(1) << map->version); /* the library owns the version */
  if (!changed)
    return UOW_OK;
  if (changed & (UINT64_C(1) << map->key))
    return uow__unit_fail(f->unit, UOW_EINVAL,
                          "flush: the key of a loaded %s changed; keys cannot change (delete it "
                          "and create a new one)",
                          map->entity->name);
  int rc;
  uow_write *w = batch_add(f, map->store, rec, NULL, UOW_WRITE_UPDATE, map->entity, &rc);
  if (!w)
    return rc;
  uow__column_read(key_column(map), rec->snapshot, &w->key);
  if (map->version != SIZE_MAX) {
    w->check_version = true;
    w->expected = snapshot_version(rec);
    set_version(rec, w->expected + 1);
    changed |= UINT64_C(1) << map->version;
  }
  w->columns = changed;
  w->values = object_values(f, map->entity, uow__record_object(rec));
  return w->values ? UOW_OK : uow__unit_fail(f->unit, UOW_ENOMEM, "flush: out of memory");
}

static int add_delete(flush *f, uow_record *rec) {
  const uow_mapping *map = rec->map;
  int rc;
  uow_write *w = batch_add(f, map->store, rec, NULL, UOW_WRITE_DELETE, map->entity, &rc);
  if (!w)
    return rc;
  uow__column_read(key_column(map), rec->snapshot, &w->key);
  w->check_version = map->version != SIZE_MAX;
  w->expected = w->check_version ? snapshot_version(rec) : 0;
  return UOW_OK;
}

static void slice_free(slice *s) {
  uow__vec_free(&s->writes);
  uow__vec_free(&s->owners);
  uow__vec_free(&s->replaced);
}

static int execute(flush *f) {
  /* Room for a slice's writes at once rather than by doubling, which copies
   * and touches fresh memory again and again. */
  const uow_store *first = f->nops ? f->op[0]->map->store : NULL;
  size_t room = first ? slice_size(first) : 0;
  if (room > f->nops)
    room = f->nops;
  if (slice_reserve(&f->batch, room) ||
      (f->nops > room && writes_ahead(first) && slice_reserve(&f->ahead, room)))
    return uow__unit_fail(f->unit, UOW_ENOMEM, "flush: out of memory");
  int rc = UOW_OK;
  for (size_t i = 0; i < f->nops && !rc; i++) {
    uow_record *rec = f->op[i];
    uow_write_kind kind = op_kind(f, i);
    if (kind == UOW_WRITE_DELETE && rec->visit == f->mark + 1)
      continue; /* a deleted record that a new one with its key replaced */
    switch (kind) {
    case UOW_WRITE_INSERT:
      if (plain(f)) {
        rc = add_plain_insert(f, rec);
        break;
      }
      rc = resolve_parents(f, rec);
      if (!rc)
        rc = add_insert(f, rec);
      break;
    case UOW_WRITE_UPDATE:
      rc = resolve_parents(f, rec);
      if (!rc)
        rc = add_update(f, rec);
      break;
    case UOW_WRITE_DELETE:
      rc = add_delete(f, rec);
      break;
    }
    /* Between operations the scratch arena holds only the values of the
     * pending writes: once they are sent, its blocks serve the next slice. */
    /* SLICE_LOCAL is the smaller slice size: below it no slice is full, and
     * from it on the batch is not empty, so f->store is its store. */
    size_t queued = f->batch.writes.len;
    if (!rc && queued >= SLICE_LOCAL && queued >= slice_size(f->store) && !(rc = send_slice(f)))
      uow__arena_recycle(&f->scratch, SIZE_MAX);
  }
  return rc;
}

/* ---- commit ---- */

/* A row of one of the library's tables joins the pending batch on `store`;
 * its first column, when generated, is left to the store. */
static int add_row(flush *f, uow_store *store, const uow_entity *e, const void *row) {
  int rc;
  uow_write *w = batch_add(f, store, NULL, NULL, UOW_WRITE_INSERT, e, &rc);
  if (!w)
    return rc;
  w->columns = all_columns(e);
  if (e->columns[0].flags & UOW_GENERATED)
    w->columns &= ~UINT64_C(1);
  if (takes_objects(store))
    w->object = row;
  else if (!(w->values = object_values(f, e, row)))
    return uow__unit_fail(f->unit, UOW_ENOMEM, "commit: out of memory");
  return UOW_OK;
}

/* The outbox rows of the unit's events join the pending batch on `store`. */
static int add_events(flush *f, uow_store *store, int64_t now) {
  uow_unit *unit = f->unit;
  for (size_t i = 0; i < unit->events.len; i++) {
    const uow_event *ev = &UOW_VEC_AT(&unit->events, uow_event, i);
    uow_outbox_row *row = uow__arena_alloc(&f->scratch, sizeof(*row));
    if (!row)
      return uow__unit_fail(unit, UOW_ENOMEM, "commit: out of memory");
    row->unit_id = unit->id;
    row->seq = (int64_t)i + 1;
    row->kind = "event";
    row->topic = ev->topic;
    row->event_key = ev->key;
    row->payload.data = ev->payload;
    row->payload.size = ev->len;
    row->created_at = now;
    row->next_attempt_at = now;
    int rc = add_row(f, store, &uow__outbox_entity, row);
    if (rc)
      return rc;
  }
  return UOW_OK;
}

/* The store of the pending batch, else the one written, else the configured
 * outbox store, else the first SQL store; NULL if there is none. */
static uow_store *outbox_store(const uow_unit *unit, uow_store *pending) {
  if (pending)
    return pending;
  for (size_t i = 0; i < unit->nstores; i++)
    if (unit->stores[i].wrote)
      return unit->stores[i].store;
  const uow_env *env = unit->env;
  uow_store *named = uow__env_store(env, env->opts.outbox_store);
  if (named && uow__store_is_sql(named))
    return named;
  for (size_t i = 0; i < env->stores.len; i++)
    if (uow__store_is_sql(UOW_VEC_AT(&env->stores, uow_store *, i)))
      return UOW_VEC_AT(&env->stores, uow_store *, i);
  return NULL;
}

/* The intents of the unit's objects in stores that cannot join a transaction,
 * as outbox rows on `store` (kept in unit->intents to apply after the commit). */
static int add_intents(flush *f, uow_store *store, int64_t now) {
  uow_unit *unit = f->unit;
  uow_buf payload;
  uow__buf_init(&payload);
  int rc = UOW_OK;
  for (size_t i = 0; i < f->intending.len && !rc; i++) {
    uow_record *rec = UOW_VEC_AT(&f->intending, uow_record *, i);
    bool del = rec->state == UOW_REC_DELETED;
    if (rec->state == UOW_REC_GONE || (rec->state == UOW_REC_CLEAN && !uow__record_changes(rec)))
      continue;
    if (!store)
      return uow__unit_fail(unit, UOW_EINVAL,
                            "commit: %s objects live in store '%s', which cannot join a "
                            "transaction; their changes go through an outbox, and no SQL store "
                            "holds one (add a SQLite or PostgreSQL store)",
                            rec->map->entity->name, rec->map->store->name);
    int64_t version = rec->state == UOW_REC_NEW ? 1 : snapshot_version(rec) + 1;
    uow_pending_intent *p = uow__vec_push(&unit->intents, sizeof(*p));
    rc = p ? (del ? UOW_OK : resolve_parents(f, rec)) : UOW_ENOMEM;
    if (!rc) {
      p->store = rec->map->store;
      rc = uow__intent_build(unit, rec, del, version, &p->intent);
    }
    if (!rc)
      rc = uow__intent_encode(&p->intent, &payload);
    uow_outbox_row *row = rc ? NULL : uow__arena_alloc(&f->scratch, sizeof(*row));
    size_t size = rc ? 0 : strlen(p->intent.table) + strlen(p->intent.key) + 2;
    char *key = row ? uow__arena_alloc(&f->scratch, size) : NULL;
    if (!rc && !key) {
      rc = UOW_ENOMEM;
    } else if (!rc) {
      snprintf(key, size, "%s:%s", p->intent.table, p->intent.key);
      row->unit_id = unit->id;
      row->seq = (int64_t)(unit->events.len + unit->intents.len);
      row->kind = "intent";
      row->topic = p->store->name;
      row->event_key = key;
      row->payload.data = uow__arena_dup(&f->scratch, payload.data, payload.len);
      row->payload.size = payload.len;
      row->created_at = row->next_attempt_at = now;
      rc = row->payload.data ? add_row(f, store, &uow__outbox_entity, row) : UOW_ENOMEM;
    }
    if (!rc && !del)
      set_version(rec, version);
  }
  uow__buf_free(&payload);
  if (rc == UOW_ENOMEM)
    return uow__unit_fail(unit, rc, "commit: out of memory");
  return rc;
}

/* The stores this unit writes to, counting what is planned: known before
 * anything is sent, so a unit the coordinator cannot commit writes nothing. */
static int admit(flush *f, uow_store **decider) {
  return uow__coord_plan(f->unit, uow__coord_writers(f->unit) | f->writers, decider);
}

/* Commit the stores the unit only read from (all but `except`): if one
 * fails, nothing has been committed yet. */
static int commit_readers(uow_unit *unit, const uow_store *except) {
  for (size_t i = 0; i < unit->nstores; i++) {
    uow_unit_store *us = &unit->stores[i];
    if (!us->in_txn || us->wrote || us->store == except)
      continue;
    uow_status st = {0, ""};
    if (us->store->ops->commit(us->conn, &st))
      return uow__unit_store_error(unit, "commit", us, &st);
    us->in_txn = false;
  }
  return UOW_OK;
}

/* One store written: its last batch, the outbox rows and COMMIT go together. */
static int finish_one_phase(flush *f) {
  uow_unit *unit = f->unit;
  uow_store *target = outbox_store(unit, pending(f) ? f->store : NULL);
  int64_t now = uow__now_ms();
  int rc = add_intents(f, target, now);
  if (rc)
    return rc;
  if (!target)
    return UOW_OK; /* nothing to write, and no store that could have */
  unit->outbox = target;
  rc = commit_readers(unit, target);
  if (rc)
    return rc;
  if (!unit->events.len && !pending(f) && !unit->stores[target->index].in_txn)
    return UOW_OK;
  rc = add_events(f, target, now);
  if (!rc) {
    f->store = target;
    rc = run_batch(f, true);
  }
  if (!rc)
    unit->stores[target->index].in_txn = false;
  return rc;
}

/* Say plainly what a failed decider commit means for a multi-store unit. */
static int decider_failed(uow_unit *unit, int rc) {
  char was[sizeof(unit->errmsg)];
  snprintf(was, sizeof(was), "%s", unit->errmsg);
  if (rc == UOW_EINDOUBT)
    return uow__unit_fail(unit, rc,
                          "%s. The unit's other stores stay prepared until uow_recover() "
                          "settles them the way the decider went: all or nothing",
                          was);
  if (rc == UOW_ECONSTRAINT && strstr(was, "uow_decision"))
    return uow__unit_fail(unit, UOW_ECONFLICT,
                          "commit: uow_recover() aborted this unit while it was being "
                          "committed (it found the unit prepared but not yet decided); "
                          "nothing was written; run the unit again (%s)",
                          was);
  return rc;
}

/* Several stores written: two-phase commit with the decision in the decider
 * (see coord.c). */
static int finish_two_phase(flush *f, uow_store *decider) {
  uow_unit *unit = f->unit;
  int rc = UOW_OK;
  if (pending(f) && f->store != decider)
    rc = run_batch(f, false);
  if (!rc)
    rc = commit_readers(unit, decider);
  if (!rc)
    rc = uow__coord_prepare(unit, decider);
  if (rc)
    return rc;
  uow_unit_store *dus = &unit->stores[decider->index];
  int64_t now = uow__now_ms();
  uow_decision_row *decision = uow__coord_decision(unit, now);
  rc = decision ? uow__coord_cleanup(unit, dus) : UOW_ENOMEM;
  if (!rc)
    rc = add_events(f, decider, now);
  if (!rc)
    rc = add_intents(f, decider, now);
  unit->outbox = decider;
  if (!rc)
    rc = add_row(f, decider, &uow__decision_entity, decision);
  if (!rc) {
    uow__crash_point("before_decision", 0);
    f->store = decider;
    rc = run_batch(f, true);
  }
  if (rc) {
    uow__coord_abort(unit, decider, rc == UOW_EINDOUBT);
    return decider_failed(unit, rc);
  }
  dus->in_txn = false;
  uow__crash_point("after_decision", 0);
  uow__coord_finish(unit, decider);
  return UOW_OK;
}

/* ---- uow_send ---- */

/* Writes uow_send left in flight become the flush's slice ahead: the first
 * write on their store completes them, and a failure among them is its. */
static void adopt_sent(flush *f) {
  uow_unit *unit = f->unit;
  if (!unit->sent.len)
    return;
  f->ahead.writes = unit->sent;
  memset(&unit->sent, 0, sizeof(unit->sent));
  f->store = unit->stores[unit->sent_store].store;
}

/* Whether an INSERT of the slice waits for a key the store generates. */
static bool waits_for_keys(const slice *s) {
  for (size_t i = 0; i < s->owners.len; i++) {
    const uow_record *rec = UOW_VEC_AT(&s->owners, uow_record *, i);
    const uow_write *w = &UOW_VEC_AT(&s->writes, uow_write, i);
    if (rec && w->kind == UOW_WRITE_INSERT && !(w->columns & (UINT64_C(1) << rec->map->key)))
      return true;
  }
  return false;
}

/* The end of a send: the last batch goes ahead like the slices before it,
 * its records take their new state now, and the unit keeps it in flight.
 * Writes waiting for keys the store generates complete here instead, so
 * that every object uow_send wrote has its key when it returns. */
static int send_end(flush *f) {
  int rc = UOW_OK;
  if (f->batch.writes.len && !waits_for_keys(&f->batch))
    rc = send_slice(f);
  if (!rc && (f->batch.writes.len || waits_for_keys(&f->ahead)))
    rc = run_batch(f, false);
  if (rc || !f->ahead.writes.len || (rc = apply_owners(f, &f->ahead, false)))
    return rc;
  f->unit->sent = f->ahead.writes;
  f->unit->sent_store = f->store->index;
  memset(&f->ahead.writes, 0, sizeof(f->ahead.writes));
  f->ahead.owners.len = f->ahead.replaced.len = 0;
  return UOW_OK;
}

/* ---- memory ---- */

void uow__flush_memory_init(uow_flush_memory *m) {
  memset(m, 0, sizeof(*m));
  uow__arena_init(&m->scratch);
}

void uow__flush_memory_free(uow_flush_memory *m) {
  uow_vec *lists[] = {&m->ops,    &m->updating, &m->deleting, &m->intending,
                      &m->writes, &m->owners,   &m->replaced};
  for (size_t i = 0; i < sizeof(lists) / sizeof(*lists); i++)
    uow__vec_free(lists[i]);
  uow__arena_free(&m->scratch);
}

/* A flush works in the lists and scratch memory the unit kept... */
static void memory_take(flush *f) {
  uow_flush_memory *m = &f->unit->flush_memory;
  f->ops = m->ops;
  f->updating = m->updating;
  f->deleting = m->deleting;
  f->intending = m->intending;
  f->batch = (slice){m->writes, m->owners, m->replaced};
  f->scratch = m->scratch;
  uow__flush_memory_init(m);
}

static uow_vec kept(uow_vec *list, size_t size) {
  uow__vec_keep(list, size, UOW_UNIT_KEEP_LIST);
  return *list;
}

/* ...and gives them back empty, but for what grew too big to keep. The
 * batch's lists may be those the slice ahead had (send_batch swaps them):
 * they hold the same items. */
static void memory_keep(flush *f) {
  uow_flush_memory *m = &f->unit->flush_memory;
  m->ops = kept(&f->ops, sizeof(uow_record *));
  m->updating = kept(&f->updating, sizeof(uow_record *));
  m->deleting = kept(&f->deleting, sizeof(uow_record *));
  m->intending = kept(&f->intending, sizeof(uow_record *));
  m->writes = kept(&f->batch.writes, sizeof(uow_write));
  m->owners = kept(&f->batch.owners, sizeof(uow_record *));
  m->replaced = kept(&f->batch.replaced, sizeof(uow_record *));
  uow__arena_recycle(&f->scratch, UOW_UNIT_KEEP_LIST);
  m->scratch = f->scratch;
}

/* ---- entry points ---- */

static int flush_run(uow_unit *unit, bool commit, bool send) {
  flush f;
  memset(&f, 0, sizeof(f));
  f.unit = unit;
  f.final = commit;
  f.send = send;
  memory_take(&f);
  adopt_sent(&f);
  uow_store *decider = NULL;
  int rc = plan(&f);
  if (!rc)
    rc = admit(&f, &decider);
  if (!rc)
    rc = execute(&f);
  if (!rc && send)
    rc = send_end(&f);
  else if (!rc && !commit)
    rc = run_batch(&f, false);
  else if (!rc)
    rc = decider ? finish_two_phase(&f, decider) : finish_one_phase(&f);
  if (rc)
    settle(&f);
  else if (send)
    unit->send_from = unit->records.len;
  unit->mixed = true; /* records flushed are no longer new */
  memory_keep(&f);
  slice_free(&f.ahead);
  return rc;
}

int uow__flush(uow_unit *unit, bool commit) { return flush_run(unit, commit, false); }

int uow__send(uow_unit *unit) {
  /* Only stores that write ahead take part: without one, no record is sent,
   * and planning would only mark them all as left to the flush. */
  bool any = false;
  for (size_t i = 0; i < unit->nstores && !any; i++)
    any = writes_ahead(unit->stores[i].store);
  if (!any) {
    unit->send_from = unit->records.len;
    return UOW_OK;
  }
  return flush_run(unit, false, true);
}

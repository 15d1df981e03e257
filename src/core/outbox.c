/*
 * outbox.c - the library's own tables, described as entities so that every
 * SQL store creates and writes them with the same code as user tables.
 *
 * uow_outbox holds events (kind 'event') and, later, intents for stores that
 * cannot join a transaction (kind 'intent'); it is written in the unit's own
 * transaction. uow_decision holds the decision records of multi-store units:
 * outcome 'commit' (written by the committer at the commit point) or 'abort'
 * (written by recovery to fence a unit that never reached it).
 * uow_relay_lease holds the lease of the one relay a SQLite store allows.
 * The columns are meant to last: relays and tools read them.
 */
#include <time.h>

#include "core/core.h"

static const uow_column outbox_columns[] = {
    UOW_COLUMN(uow_outbox_row, id, UOW_INT64, UOW_PRIMARY_KEY | UOW_GENERATED),
    UOW_COLUMN(uow_outbox_row, unit_id, UOW_TEXT, 0),
    UOW_COLUMN(uow_outbox_row, seq, UOW_INT64, 0),
    UOW_COLUMN(uow_outbox_row, kind, UOW_TEXT, 0),
    UOW_COLUMN(uow_outbox_row, topic, UOW_TEXT, 0),
    UOW_COLUMN(uow_outbox_row, event_key, UOW_TEXT, UOW_NULLABLE),
    UOW_COLUMN(uow_outbox_row, payload, UOW_BLOB, UOW_NULLABLE),
    UOW_COLUMN(uow_outbox_row, created_at, UOW_INT64, 0),
    /* 0 pending, 1 delivered, 2 dead */
    UOW_COLUMN(uow_outbox_row, state, UOW_INT64, 0),
    UOW_COLUMN(uow_outbox_row, attempts, UOW_INT64, 0),
    UOW_COLUMN(uow_outbox_row, next_attempt_at, UOW_INT64, 0),
    UOW_COLUMN(uow_outbox_row, delivered_at, UOW_INT64, UOW_NULLABLE),
    UOW_COLUMN(uow_outbox_row, last_error, UOW_TEXT, UOW_NULLABLE),
};
const uow_entity uow__outbox_entity = UOW_ENTITY(uow_outbox_row, "uow_outbox", outbox_columns);

static const uow_column decision_columns[] = {
    UOW_COLUMN(uow_decision_row, unit_id, UOW_TEXT, UOW_PRIMARY_KEY),
    UOW_COLUMN(uow_decision_row, outcome, UOW_TEXT, 0),
    UOW_COLUMN(uow_decision_row, participants, UOW_TEXT, 0),
    UOW_COLUMN(uow_decision_row, created_at, UOW_INT64, 0),
};
const uow_entity uow__decision_entity =
    UOW_ENTITY(uow_decision_row, "uow_decision", decision_columns);

static const uow_column lease_columns[] = {
    UOW_COLUMN(uow_lease_row, name, UOW_TEXT, UOW_PRIMARY_KEY),
    UOW_COLUMN(uow_lease_row, holder, UOW_TEXT, 0),
    UOW_COLUMN(uow_lease_row, expires_at, UOW_INT64, 0),
};
const uow_entity uow__lease_entity = UOW_ENTITY(uow_lease_row, "uow_relay_lease", lease_columns);

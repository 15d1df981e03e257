#!/usr/bin/env python3
"""w_sqlalchemy.py - the workloads written with SQLAlchemy 1.4's ORM, the way
its users write them: declarative models, a version_id_col for optimistic
concurrency, one Session per unit with `session.begin()`, `session.add`,
`Session.get(..., with_for_update=True)`, and a flush at commit. SQLite gets
WAL and synchronous=FULL from a connect event, as SQLAlchemy's documentation
shows, and a QueuePool (1.4 gives file databases a NullPool, which would
measure connecting, not the ORM); PostgreSQL is reached through psycopg2.

    w_sqlalchemy.py W1|W2|W3 sqlite PATH | pg URL
    w_sqlalchemy.py W4 SQLITE_PATH PG_URL

Prints the same result lines as the C programs (bench/bench.h). Same tables,
data and statements as theirs, as far as the ORM lets: it writes the version
column itself and names its own bind parameters.
"""
import os
import sys
import time

IMPL = "sqlalchemy"


def na(workload, store, reason):
    print(f"na {IMPL} {workload} {store} {' '.join(str(reason).split())[:400]}", flush=True)


try:
    from sqlalchemy import (BigInteger, Column, Float, ForeignKey, Index, Integer,
                            LargeBinary, Text, create_engine, event, select)
    from sqlalchemy.orm import Session, declarative_base, relationship
    from sqlalchemy.pool import QueuePool
except ImportError as exc:  # the bench still runs without it
    if len(sys.argv) > 2:
        na(sys.argv[1], sys.argv[2] if sys.argv[1] != "W4" else "sqlite+pg",
           f"SQLAlchemy is not installed ({exc}); apt-get install python3-sqlalchemy")
    sys.exit(0)

QUICK = os.environ.get("QUICK", "") not in ("", "0")
SIZES = dict(w1_rows=5000 if QUICK else 20000, w2_courses=100, w2_seats=1000,
             w2_units=1000 if QUICK else 5000, w3_users=5000 if QUICK else 20000,
             w4_units=500 if QUICK else 2000)
W3_EVERY, W3_DELTA = 10, 0.5

# BigInteger on PostgreSQL, INTEGER (the rowid alias) on SQLite: as libuow's tables.
Key = BigInteger().with_variant(Integer, "sqlite")
Base = declarative_base()


class User(Base):
    __tablename__ = "users"
    id = Column(Key, primary_key=True, autoincrement=False)
    email = Column(Text, nullable=False, unique=True)
    name = Column(Text, nullable=False)
    score = Column(Float(53), nullable=False)
    version = Column(Key, nullable=False)
    __mapper_args__ = {"version_id_col": version}


class Course(Base):
    __tablename__ = "courses"
    id = Column(Key, primary_key=True, autoincrement=False)
    title = Column(Text, nullable=False)
    seats_left = Column(Key, nullable=False)
    version = Column(Key, nullable=False)
    __mapper_args__ = {"version_id_col": version}


class Enrollment(Base):
    __tablename__ = "enrollments"
    id = Column(Key, primary_key=True)
    course_id = Column(Key, ForeignKey("courses.id"), nullable=False)
    learner = Column(Text, nullable=False)
    enrolled_at = Column(Key, nullable=False)
    course = relationship(Course)
    __table_args__ = (Index("enrollments_by_learner", "course_id", "learner"),)


class AuditLog(Base):
    __tablename__ = "audit_log"
    id = Column(Key, primary_key=True)
    action = Column(Text, nullable=False)
    detail = Column(Text, nullable=False)
    at = Column(Key, nullable=False)


class OutboxRow(Base):
    """The same table libuow writes its events to, with the relay's indexes."""
    __tablename__ = "uow_outbox"
    __table_args__ = (
        Index("uow_outbox_pending", "state", "kind", "id"),
        Index("uow_outbox_key", "event_key", "state", "id"),
    )
    id = Column(Key, primary_key=True)
    unit_id = Column(Text, nullable=False)
    seq = Column(Key, nullable=False)
    kind = Column(Text, nullable=False)
    topic = Column(Text, nullable=False)
    event_key = Column(Text)
    payload = Column(LargeBinary)
    created_at = Column(Key, nullable=False)
    state = Column(Key, nullable=False)
    attempts = Column(Key, nullable=False)
    next_attempt_at = Column(Key, nullable=False)
    delivered_at = Column(Key)
    last_error = Column(Text)


def engine_for(store, where):
    if store == "sqlite":
        engine = create_engine(f"sqlite:///{where}", future=True, poolclass=QueuePool)

        @event.listens_for(engine, "connect")
        def set_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=wal")
            cursor.execute("PRAGMA synchronous=full")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    import psycopg2  # the URL is a libpq URL: let psycopg2 parse it
    return create_engine("postgresql+psycopg2://", creator=lambda: psycopg2.connect(where),
                         future=True)


def epoch_ms():
    return time.time_ns() // 1_000_000


def email(i):
    return f"user{i:06d}@example.com"


def insert_users(engine, n):
    with Session(engine) as session, session.begin():
        session.add_all(User(id=i, email=email(i), name=f"User {i:06d}",
                             score=(i % 1000) / 4.0) for i in range(1, n + 1))


def w1(engine):
    n = SIZES["w1_rows"]
    t0 = time.perf_counter()
    insert_users(engine, n)
    return n / (time.perf_counter() - t0), "rows/s"


def enroll(engine, course_id, learner, unit_id):
    with Session(engine) as session, session.begin():
        course = session.get(Course, course_id, with_for_update=True)
        taken = session.execute(select(Enrollment).filter_by(course_id=course_id,
                                                             learner=learner)).first()
        if taken is not None or course.seats_left == 0:
            raise RuntimeError(f"{learner}: already enrolled or the course is full")
        course.seats_left -= 1
        now = epoch_ms()
        session.add(Enrollment(course=course, learner=learner, enrolled_at=now))
        session.add(AuditLog(action="enroll", detail=f"{learner} took a seat in {course.title}",
                             at=now))
        payload = f'{{"course":{course_id},"learner":"{learner}"}}'.encode()
        session.add(OutboxRow(unit_id=unit_id, seq=1, kind="event", topic="enrollment.created",
                              event_key=learner, payload=payload, created_at=now, state=0,
                              attempts=0, next_attempt_at=now))


def w2(engine):
    with Session(engine) as session, session.begin():
        session.add_all(Course(id=c, title=f"Course {c:03d}", seats_left=SIZES["w2_seats"])
                        for c in range(1, SIZES["w2_courses"] + 1))
    nonce = f"{os.getpid() ^ epoch_ms():016x}"
    units = SIZES["w2_units"]
    t0 = time.perf_counter()
    for k in range(units):
        enroll(engine, k % SIZES["w2_courses"] + 1, f"learner{k:05d}", f"{nonce}-{k + 1}")
    return units / (time.perf_counter() - t0), "units/s"


def w3(engine):
    n = SIZES["w3_users"]
    insert_users(engine, n)
    t0 = time.perf_counter()
    with Session(engine) as session, session.begin():
        users = session.execute(select(User)).scalars().all()
        if len(users) != n:
            raise RuntimeError(f"loaded {len(users)} users, expected {n}")
        for user in users:
            if user.id % W3_EVERY == 0:
                user.score += W3_DELTA
    return (time.perf_counter() - t0) * 1000.0, "ms"


def main(argv):
    if len(argv) != 4:
        print("usage: w_sqlalchemy.py W1|W2|W3 sqlite PATH | pg URL | W4 PATH URL",
              file=sys.stderr)
        return 2
    workload = argv[1]
    if workload == "W4":
        # Session(twophase=True) asks every engine to prepare; SQLite cannot.
        na("W4", "sqlite+pg", "SQLAlchemy's two-phase Session needs every engine to "
           "PREPARE; SQLite cannot (no decision-record protocol in the ORM)")
        return 0
    store, where = argv[2], argv[3]
    runs = {"W1": w1, "W2": w2, "W3": w3}
    if workload not in runs or store not in ("sqlite", "pg"):
        print(f"w_sqlalchemy.py: unknown workload or store: {workload} {store}", file=sys.stderr)
        return 2
    try:
        engine = engine_for(store, where)
        Base.metadata.create_all(engine)
        value, unit = runs[workload](engine)
        engine.dispose()
    except Exception as exc:  # pylint: disable=broad-except
        na(workload, store, f"{type(exc).__name__}: {exc}")
        return 0
    print(f"result {IMPL} {workload} {store} {value:.6g} {unit}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

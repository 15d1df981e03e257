#!/usr/bin/env bash
# pg-test-server.sh - a throwaway PostgreSQL 15 server for libuow's tests.
#
#   pg-test-server.sh start DIR   initdb + start a server owned by DIR, create db "uowtest"
#   pg-test-server.sh stop DIR    stop that server (only that one) and delete its data
#   pg-test-server.sh restart DIR restart that server (fast shutdown: sessions are cut),
#                                 same data, socket and port; tests use it to see
#                                 pooled connections outlive their server
#   pg-test-server.sh url DIR     print the libpq URL tests use to reach it
#
# The server listens on a unix socket only (listen_addresses=''), with
# max_prepared_transactions set (PG_MAX_PREPARED) so two-phase commit works. The
# socket directory and port are derived from DIR alone, so CMake can learn the
# URL at configure time (`url`) before the server exists:
#   - port: 20000 + (hash of DIR mod 20000);
#   - sockets: DIR/pgsock when that path is short enough for a unix socket
#     (< 107 bytes) and the postgres user can reach it, else /tmp/uow-<hash>/pgsock.
# When run as root, the server runs as the `postgres` OS user (initdb refuses
# root); its data then lives in DIR/pg when postgres can traverse DIR, else in a
# postgres-owned mktemp directory under /tmp. The data location is recorded in
# DIR/pg.path so `stop` and `restart` find it. `stop` and `restart` only touch a
# process whose pid comes from our own postmaster.pid and whose working directory
# is our data directory.
#
# Environment:
#   PG_BINDIR         overrides where initdb/pg_ctl/postgres are found.
#   PG_MAX_PREPARED   max_prepared_transactions at `start` (default 64); 0 makes a
#                     server that refuses two-phase commit. `restart` keeps the
#                     value the server was started with.
set -euo pipefail

die() { echo "pg-test-server: $*" >&2; exit 1; }
say() { echo "pg-test-server: $*"; }

usage() { die "usage: $0 start|stop|restart|url DIR"; }

[ $# -eq 2 ] || usage
cmd=$1
[ -n "$2" ] || usage
DIR=$(realpath -m -- "$2")

find_bindir() {
  if [ -n "${PG_BINDIR:-}" ]; then echo "$PG_BINDIR"; return; fi
  if [ -x /usr/lib/postgresql/15/bin/pg_ctl ]; then echo /usr/lib/postgresql/15/bin; return; fi
  local d
  d=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  if [ -n "$d" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return; fi
  if command -v pg_ctl >/dev/null 2>&1; then dirname "$(command -v pg_ctl)"; return; fi
  die "cannot find the PostgreSQL server binaries (install postgresql-15 or set PG_BINDIR)"
}

HASH=$(printf '%s' "$DIR" | sha256sum | cut -c1-8)
PORT=$((20000 + 0x$HASH % 20000))
TMPBASE=/tmp/uow-$HASH

# Run a command as the user that owns the server: postgres when we are root.
IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1
as_server() {
  if [ "$IS_ROOT" -eq 1 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# Can the server user reach (traverse) directory $1? Checked on the nearest
# existing ancestor, since $1 may not exist yet.
server_can_reach() {
  [ "$IS_ROOT" -eq 1 ] || return 0
  local d=$1
  while [ ! -d "$d" ]; do d=$(dirname -- "$d"); done
  runuser -u postgres -- test -x "$d" 2>/dev/null
}

sock_dir() {
  local candidate="$DIR/pgsock"
  # ".s.PGSQL.NNNNN.lock" is the longest name postgres puts there.
  if [ $(( ${#candidate} + 20 )) -lt 107 ] && server_can_reach "$DIR"; then
    echo "$candidate"
  else
    echo "$TMPBASE/pgsock"
  fi
}

urlencode() {
  local s=$1 out='' c i
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case "$c" in
      [A-Za-z0-9._~/-]) out+=$c ;;
      *) out+=$(printf '%%%02X' "'$c") ;;
    esac
  done
  printf '%s' "$out"
}

SOCKDIR=$(sock_dir)
URL="postgresql:///uowtest?host=$(urlencode "$SOCKDIR")&port=$PORT&user=postgres"

# Is $1 (a pid) a live postmaster running in data directory $2?
is_our_postmaster() {
  local pid=$1 data=$2 cwd
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ -d "/proc/$pid" ] || return 1
  cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) || return 1
  [ "$cwd" = "$(realpath -m -- "$data")" ]
}

# Where the server's files live (data/ and postgres.log), as recorded by start.
recorded_base() {
  if [ -f "$DIR/pg.path" ]; then
    head -n 1 "$DIR/pg.path"
  fi
}

# Only ever delete directories that look like ours.
safe_rm_base() {
  local base=$1
  case "$base" in
    "$DIR"/pg | /tmp/uow-pg.*) rm -rf -- "$base" ;;
    '') ;;
    *) say "not removing unexpected path $base" ;;
  esac
}

do_stop() {
  local base data pid bindir
  base=$(recorded_base)
  if [ -z "$base" ]; then
    # Nothing recorded: only the default location can hold a server of ours.
    [ -d "$DIR/pg" ] && base="$DIR/pg"
  fi
  if [ -n "$base" ]; then
    data="$base/data"
    if [ -f "$data/postmaster.pid" ]; then
      pid=$(head -n 1 "$data/postmaster.pid" 2>/dev/null || true)
      if is_our_postmaster "$pid" "$data"; then
        bindir=$(find_bindir)
        say "stopping server pid $pid ($data)"
        if ! as_server "$bindir/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null; then
          say "fast shutdown failed; using immediate"
          as_server "$bindir/pg_ctl" -D "$data" -m immediate -w -t 30 stop >/dev/null || true
        fi
        if is_our_postmaster "$pid" "$data"; then
          kill -KILL "$pid" 2>/dev/null || true
        fi
      else
        say "stale postmaster.pid (pid ${pid:-?} is not our server); ignoring it"
      fi
    fi
    safe_rm_base "$base"
  fi
  rm -f -- "$DIR/pg.path" "$DIR/initdb.log"
  rm -rf -- "$SOCKDIR"
  rmdir -- "$TMPBASE" 2>/dev/null || true
}

# Wait until the server accepts connections on our socket and port.
wait_ready() {
  local bindir=$1 log=$2 i
  for ((i = 0; i < 100; i++)); do
    if "$bindir/pg_isready" -q -h "$SOCKDIR" -p "$PORT" -U postgres -d postgres; then
      return 0
    fi
    sleep 0.1
  done
  die "server did not become ready (log: $log)"
}

# Restart our own running server in place. pg_ctl restart takes the options of
# the last start from postmaster.opts, so socket, port and settings stay; -l is
# given again so that the server's output goes to its log, not to our caller.
do_restart() {
  local base data pid bindir log
  base=$(recorded_base)
  [ -n "$base" ] || die "no server recorded in $DIR (run start first)"
  data="$base/data"
  log="$base/postgres.log"
  [ -f "$data/postmaster.pid" ] || die "no postmaster.pid in $data: the server is not running"
  pid=$(head -n 1 "$data/postmaster.pid" 2>/dev/null || true)
  is_our_postmaster "$pid" "$data" ||
    die "pid ${pid:-?} from $data/postmaster.pid is not our server; not restarting"
  bindir=$(find_bindir)
  say "restarting server pid $pid ($data)"
  if ! as_server "$bindir/pg_ctl" -D "$data" -l "$log" -m fast -w -t 60 restart >/dev/null; then
    tail -n 30 "$log" >&2 || true
    die "pg_ctl restart failed (log: $log)"
  fi
  wait_ready "$bindir" "$log"
  pid=$(head -n 1 "$data/postmaster.pid" 2>/dev/null || true)
  is_our_postmaster "$pid" "$data" || die "after the restart, pid ${pid:-?} is not our server"
  say "restarted: pid $pid, $URL"
}

# mkdir -p, then insist the directory belongs to $2 (a user): /tmp is shared.
make_owned_dir() {
  local d=$1 owner=$2
  mkdir -p -- "$d"
  if [ "$IS_ROOT" -eq 1 ]; then
    chown "$owner:" -- "$d"
  fi
  [ "$(stat -c %U -- "$d")" = "$owner" ] || die "$d is not owned by $owner"
  chmod 700 -- "$d"
}

do_start() {
  local bindir server_user base data log max_prepared=${PG_MAX_PREPARED:-64}
  [[ "$max_prepared" =~ ^[0-9]+$ ]] || die "PG_MAX_PREPARED='$max_prepared': expected a number >= 0"
  bindir=$(find_bindir)
  server_user=$(id -un)
  if [ "$IS_ROOT" -eq 1 ]; then
    id postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' OS user (package postgresql-15)"
    server_user=postgres
  fi

  mkdir -p -- "$DIR"
  # `url` (run by CMake before DIR existed) judged reachability on DIR's
  # parent; a restrictive umask must not make DIR itself answer differently.
  chmod 755 -- "$DIR"
  do_stop

  if server_can_reach "$DIR"; then
    base="$DIR/pg"
    make_owned_dir "$base" "$server_user"
  else
    base=$(mktemp -d /tmp/uow-pg.XXXXXX)
    [ "$IS_ROOT" -eq 1 ] && chown postgres: -- "$base"
    chmod 700 -- "$base"
  fi
  printf '%s\n' "$base" >"$DIR/pg.path"
  data="$base/data"
  log="$base/postgres.log"

  if [ "$SOCKDIR" = "$TMPBASE/pgsock" ]; then
    mkdir -p -- "$TMPBASE"
    chmod 755 -- "$TMPBASE"
    [ "$(stat -c %u -- "$TMPBASE")" = "$(id -u)" ] || die "$TMPBASE is not ours"
  fi
  make_owned_dir "$SOCKDIR" "$server_user"

  say "initdb $data"
  if ! as_server "$bindir/initdb" -D "$data" --auth=trust -U postgres --no-sync \
      -E UTF8 --locale=C --no-instructions >"$DIR/initdb.log" 2>&1; then
    cat "$DIR/initdb.log" >&2
    die "initdb failed"
  fi

  local opts="-c listen_addresses='' -c unix_socket_directories='$SOCKDIR' -c port=$PORT"
  opts+=" -c max_prepared_transactions=$max_prepared -c max_connections=100 -c fsync=on"
  opts+=" -c shared_buffers=64MB"
  say "starting on $SOCKDIR port $PORT"
  if ! as_server "$bindir/pg_ctl" -D "$data" -l "$log" -o "$opts" -w -t 60 start >/dev/null; then
    tail -n 30 "$log" >&2 || true
    die "pg_ctl start failed (log: $log)"
  fi

  wait_ready "$bindir" "$log"

  "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCKDIR" -p "$PORT" -U postgres -d postgres \
    -c 'CREATE DATABASE uowtest' >/dev/null || die "CREATE DATABASE uowtest failed"
  say "ready: $URL"
}

case "$cmd" in
  start) do_start ;;
  stop)
    do_stop
    say "stopped ($DIR)"
    ;;
  restart) do_restart ;;
  url) printf '%s\n' "$URL" ;;
  *) usage ;;
esac

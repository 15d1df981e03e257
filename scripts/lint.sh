#!/usr/bin/env bash
# scripts/lint.sh CHECK - source checks run by CTest.
#   raw-alloc   no malloc/calloc/realloc/free outside src/util/alloc.c, so the
#               allocator hook (uow_set_allocator) reaches every allocation
#   public-docs every UOW_API declaration in include/ has a Doxygen comment
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

case "${1:-}" in
raw-alloc)
  found=$(grep -rnE '(^|[^_a-zA-Z0-9.>])(malloc|calloc|realloc|free)[[:space:]]*\(' src \
            --include='*.c' --include='*.h' | grep -v '^src/util/alloc.c:' || true)
  if [ -n "$found" ]; then
    echo "raw allocator calls outside src/util/alloc.c:"
    echo "$found"
    exit 1
  fi
  echo "no raw allocator calls outside src/util/alloc.c"
  ;;
public-docs)
  # A declaration is documented when the closest non-blank line above it ends a
  # Doxygen comment (*/ of a /** block) or is a /** ... */ one-liner.
  missing=$(awk '
    FNR == 1 { in_doc = 0; last = "" }
    /^[[:space:]]*\/\*\*/ { in_doc = 1 }
    {
      if ($0 ~ /^UOW_API/ && last !~ /\*\/[[:space:]]*$/)
        printf "%s:%d: %s\n", FILENAME, FNR, $0
      if ($0 !~ /^[[:space:]]*$/) last = $0
    }' include/uow.h include/uow/store.h)
  if [ -n "$missing" ]; then
    echo "public declarations without a doc comment:"
    echo "$missing"
    exit 1
  fi
  echo "every public declaration has a doc comment ($(grep -c 'UOW_API' include/uow.h include/uow/store.h | paste -sd' '))"
  ;;
*)
  echo "usage: scripts/lint.sh raw-alloc|public-docs" >&2
  exit 2
  ;;
esac

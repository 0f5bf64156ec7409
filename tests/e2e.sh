#!/usr/bin/env bash
# End-to-end tests of the qeval CLI: runs every tests/e2e/*.sh in order.
# Each file calls the helpers below; a failure is counted, not fatal, so one
# run reports everything. Env: QEVAL (binary), QEVAL_DATA (shared data).
set -u
QEVAL=${QEVAL:-bin/qeval}
QEVAL=$(cd "$(dirname "$QEVAL")" && pwd)/$(basename "$QEVAL")
QEVAL_DATA=${QEVAL_DATA:-$(cd "$(dirname "$0")/../.." && pwd)/shared/data}
export QEVAL QEVAL_DATA
E2E_TMP=$(mktemp -d "${TMPDIR:-/tmp}/qeval-e2e-XXXXXX")
trap 'rm -rf "$E2E_TMP"' EXIT
pass=0
fail=0

ok() { pass=$((pass + 1)); echo "ok - $1"; }
not_ok() { fail=$((fail + 1)); echo "not ok - $1"; shift; for l in "$@"; do echo "#   $l"; done; }

# expect_exit NAME CODE CMD...: CMD exits with CODE; stdout/stderr kept in $OUT/$ERR.
expect_exit() {
    local name=$1 code=$2
    shift 2
    "$@" >"$E2E_TMP/out" 2>"$E2E_TMP/err"
    local rc=$?
    OUT=$(cat "$E2E_TMP/out")
    ERR=$(cat "$E2E_TMP/err")
    if [ "$rc" -eq "$code" ]; then ok "$name"; else
        not_ok "$name" "expected exit $code, got $rc: $*" "stderr: $(head -c 600 "$E2E_TMP/err")"
    fi
}
# expect_match NAME TEXT REGEX: TEXT matches the extended REGEX.
expect_match() {
    if printf '%s' "$2" | grep -Eq -- "$3"; then ok "$1"; else
        not_ok "$1" "no match for /$3/ in:" "$(printf '%s' "$2" | head -c 600)"
    fi
}
# expect_lines NAME TEXT N: TEXT has exactly N lines.
expect_lines() {
    local n
    n=$(printf '%s\n' "$2" | grep -c '')
    if [ "$n" -eq "$3" ]; then ok "$1"; else not_ok "$1" "expected $3 lines, got $n"; fi
}

expect_exit "no arguments is a usage error" 2 "$QEVAL"
expect_exit "--help exits 0" 0 "$QEVAL" --help
expect_match "--help lists commands" "$OUT" "commands:"
expect_exit "unknown command is a usage error" 2 "$QEVAL" frobnicate
expect_match "unknown command is named" "$ERR" "frobnicate"

for f in "$(dirname "$0")"/e2e/*.sh; do
    [ -e "$f" ] || continue
    # shellcheck source=/dev/null
    . "$f"
done

echo "# e2e: $pass passed, $fail failed"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

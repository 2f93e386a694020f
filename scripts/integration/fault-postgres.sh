#!/usr/bin/env bash
# Fault test: stop PostgreSQL in the middle of a load of VerifyPlan calls, start it again, and
# check that (1) every APPROVED reply a client received has its ledger row with the same statement
# (no approval without its row), (2) the node decides again without a restart, (3) the ledger
# still verifies. Uses a database of its own and the dev cluster, token and certificates.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/scratch-node.bash"
PG_CTL="su -s /bin/sh csdev -c"
load=""
pg() { $PG_CTL "/usr/lib/postgresql/15/bin/pg_ctl -D '$LOCAL/pg/data' $*" >/dev/null; }
cleanup() {
  [ -n "$load" ] && kill "$load" 2>/dev/null
  stop_node || true
  wait 2>/dev/null
  pg status || pg "-l '$LOCAL/pg/log/postgres.log' -w -t 60 start"
  scratch_cleanup
}
trap cleanup EXIT

scratch_node fault
start_node "$work/serve.log" error

echo "fault: load on a node whose database stops for 3 s"
start_load 10
sleep 3
pg "-m immediate -w stop"
echo "    PostgreSQL stopped (immediate)"
sleep 3
pg "-l '$LOCAL/pg/log/postgres.log' -w -t 60 start"
echo "    PostgreSQL started again"
wait "$load"; load=""
sed 's/^/    /' "$work/bench.out"

check_approvals_ledgered "$work/approvals.tsv"
check_decides_again "the node decides again without a restart"
check_ledger_verifies "ledger verify after the outage"
echo "fault: the load generator when its node goes away"
"$BIN" bench decisions --config "$config" --connections 4 --seconds 3 >"$work/gone.out" 2>&1 &
load=$!
sleep 1
rc=0
stop_node || rc=$?
check "the node stops within 20 s of SIGTERM" "$rc"
rc=0
wait "$load" || rc=$?
load=""
# Its connections close: each stops there (it used to fail call after call on a closed connection
# until the end of the run, and before that to recurse from call to call until the stack ran out).
check "the load generator ends its run and reports its lost connections (exit $rc)" \
  "$([ "$rc" -eq 0 ] && grep -q '^decisions: .* 4 connections lost' "$work/gone.out"; echo $?)"
[ "$rc" -eq 0 ] || sed 's/^/    /' "$work/gone.out"
echo "fault: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

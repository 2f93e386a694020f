#!/usr/bin/env bash
# Fault test: the node is killed (SIGKILL: no shutdown, no flush) in the middle of a load of
# VerifyPlan calls. Checks that (1) the load generator stops using the lost connections and says
# so, (2) every APPROVED reply a client received has its ledger row with the same statement
# (a reply leaves only after COMMIT), (3) the ledger verifies: entries, Merkle nodes and checkpoints
# are whole (a batch and the subtrees it completes are one statement), (4) a node started again on
# the same ledger takes the lease back at once and decides, and the ledger still verifies after.
# Uses a database of its own and the dev cluster, token and certificates.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/scratch-node.bash"
load=""
cleanup() {
  [ -n "$load" ] && kill "$load" 2>/dev/null
  wait 2>/dev/null
  scratch_cleanup
}
trap cleanup EXIT

scratch_node crash
start_node "$work/serve.log" error

echo "crash: load on a node that is killed after 3 s"
start_load 6
sleep 3
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
pid=""
echo "    node killed (SIGKILL)"
rc=0
wait "$load" || rc=$?
load=""
sed 's/^/    /' "$work/bench.out"
check "the load generator stops using its lost connections and reports them (exit $rc)" \
  "$([ "$rc" -eq 0 ] && grep -q '^decisions: .* 8 connections lost' "$work/bench.out"; echo $?)"

check_approvals_ledgered "$work/approvals.tsv"
check_ledger_verifies "ledger verify after the crash"

echo "crash: the node started again on the same ledger"
before=$(psql_super -d "$db" -Atc "SELECT epoch FROM lease")
start_node "$work/serve-again.log" error
after=$(psql_super -d "$db" -Atc "SELECT epoch FROM lease")
check "it takes the lease back at once, under a new epoch ($before -> $after)" "$([ "$after" -gt "$before" ]; echo $?)"
check_decides_again "it decides again"
rc=0
stop_node || rc=$?
check "it stops within 20 s of SIGTERM" "$rc"
check_ledger_verifies "ledger verify after the restart"
echo "crash: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

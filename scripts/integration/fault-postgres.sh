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
"$BIN" bench decisions --config "$config" --connections 8 --seconds 10 --record "$work/approvals.tsv" >"$work/bench.out" 2>&1 &
load=$!
sleep 3
pg "-m immediate -w stop"
echo "    PostgreSQL stopped (immediate)"
sleep 3
pg "-l '$LOCAL/pg/log/postgres.log' -w -t 60 start"
echo "    PostgreSQL started again"
wait "$load"; load=""
sed 's/^/    /' "$work/bench.out"

approved=$(awk -F'\t' '$3 == "APPROVED"' "$work/approvals.tsv" | sort > "$work/approved.tsv"; wc -l < "$work/approved.tsv")
check "decisions were approved during the run ($approved)" "$([ "$approved" -gt 0 ]; echo $?)"
psql_super -d "$db" -At -F $'\t' -c "SELECT request_id, idx, encode(sha256(statement), 'hex') FROM entries WHERE kind = 'decision'" \
  | sort > "$work/ledger.tsv"
missing=$(awk -F'\t' 'NR == FNR { row[$1] = $2 "\t" $3; next } !($1 in row) || row[$1] != $2 "\t" $4' \
  "$work/ledger.tsv" "$work/approved.tsv" | wc -l)
check "every APPROVED reply has its ledger row with the same statement and index (missing: $missing)" "$([ "$missing" -eq 0 ]; echo $?)"

ok=1
for _ in $(seq 30); do
  rc=0
  "$BIN" plan submit --config "$config" --plan "$ROOT/../shared/fixtures/terraform/public/bridgecrewio_checkov-plan-change-keys.json" \
    --request "change the database security group rules" --owner maria.lopez@acmetech.example --deadline-ms 3000 >/dev/null 2>&1 || rc=$?
  # 0 APPROVED, 2 ESCALATE, 3 VETO: a signed, ledgered decision either way; 1 is UNAVAILABLE.
  if [ "$rc" -eq 0 ] || [ "$rc" -eq 2 ] || [ "$rc" -eq 3 ]; then ok=0; break; fi
  sleep 0.5
done
check "the node decides again without a restart" "$ok"

"$BIN" keys export-public --config "$config" --first --output "$work/first.pem" >/dev/null
rc=0
"$BIN" ledger verify --config "$config" --trusted-key "$work/first.pem" >"$work/verify.out" 2>&1 || rc=$?
check "ledger verify after the outage" "$rc"
[ "$rc" -eq 0 ] || sed 's/^/    /' "$work/verify.out"
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
# Every call after that fails at once on a closed connection: counted as errors, and the run ends
# on time (it used to recurse from call to call until the stack ran out).
check "the load generator ends its run and reports it (exit $rc)" "$([ "$rc" -eq 0 ] && grep -q '^decisions:' "$work/gone.out"; echo $?)"
[ "$rc" -eq 0 ] || sed 's/^/    /' "$work/gone.out"
echo "fault: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

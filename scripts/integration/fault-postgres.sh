#!/usr/bin/env bash
# Fault test: stop PostgreSQL in the middle of a load of VerifyPlan calls, start it again, and
# check that (1) every APPROVED reply a client received has its ledger row with the same statement
# (no approval without its row), (2) the node decides again without a restart, (3) the ledger
# still verifies. Uses a database of its own and the dev cluster, token and certificates.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOCAL="$ROOT/.local"
BIN="${COUNTERSIGN_BIN:-$ROOT/.build/debug/countersign}"
PG_CTL="su -s /bin/sh csdev -c"
work=$(mktemp -d); pid=""; load=""
db="cs_fault_$$"
config="$LOCAL/fault.yaml"
psql_super() {
  PGPASSWORD=$(cat "$LOCAL/secrets/pg-superuser-password") psql -X -q -v ON_ERROR_STOP=1 -h "$LOCAL/pg/run" -U postgres "$@"
}
pg() { $PG_CTL "/usr/lib/postgresql/15/bin/pg_ctl -D '$LOCAL/pg/data' $*" >/dev/null; }
cleanup() {
  [ -n "$load" ] && kill "$load" 2>/dev/null
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  wait 2>/dev/null
  pg status || pg "-l '$LOCAL/pg/log/postgres.log' -w -t 60 start"
  psql_super -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work" "$config"
}
trap cleanup EXIT
passed=0; failed=0
check() { if [ "$2" = 0 ]; then passed=$((passed+1)); echo "  ok    $1"; else failed=$((failed+1)); echo "  FAIL  $1"; fi; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -e "s|^  listen: .*|  listen: 127.0.0.1:$port|" -e "s|^  advertise: .*|  advertise: 127.0.0.1:$port|" \
    -e "s|^  name: .*|  name: fault|" -e "s|^  database: countersign$|  database: $db|" \
    -e "/^  metrics_listen:/d" "$LOCAL/countersign.yaml" > "$config"
psql_super -d postgres -c "CREATE DATABASE $db OWNER countersign_owner" >/dev/null
psql_super -d "$db" -c "REVOKE ALL ON SCHEMA public FROM PUBLIC; GRANT USAGE ON SCHEMA public TO countersign_writer, countersign_reader; REVOKE CREATE ON SCHEMA public FROM countersign_writer, countersign_reader;" >/dev/null
"$BIN" ledger migrate --config "$config" >/dev/null
"$BIN" serve --config "$config" --log-level error 2>"$work/serve.log" &
pid=$!
"$BIN" health --config "$config" --ready --wait 30 >/dev/null

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
for _ in $(seq 60); do
  rc=0
  "$BIN" plan submit --config "$config" --plan "$ROOT/../shared/fixtures/terraform/public/bridgecrewio_checkov-plan-change-keys.json" \
    --request "change the database security group rules" --owner maria.lopez@acmetech.example >/dev/null 2>&1 || rc=$?
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
echo "fault: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

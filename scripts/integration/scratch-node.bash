# scripts/integration/scratch-node.bash: sourced, never run. scripts/test runs only
# scripts/integration/*.sh, so this file is not a test of its own.
# Gives an integration script a node of its own on the dev cluster, token and certificates, so a
# running `make demo` instance is not disturbed:
#   scratch_node NAME       creates and migrates database cs_NAME_<pid> ($db) and writes $config:
#                           the dev configuration with node name NAME, that database, a free port
#                           ($port) and no metrics listener
#   start_node LOG LEVEL    runs `countersign serve` on $config in the background ($pid), logging
#                           to LOG at LEVEL, and returns once it can decide (fails fast, printing
#                           LOG, if it dies; at most 30 s)
#   stop_node               stops it (SIGTERM); fails, having killed it, if it is still running
#                           20 s later
#   scratch_cleanup         stops the node, drops the database, removes $config and $work
#   check LABEL STATUS      prints "ok" or "FAIL" and counts into $passed and $failed
#   start_load SECONDS      runs `countersign bench decisions` on the node in the background
#                           ($load): 8 connections, replies recorded in $work/approvals.tsv, its
#                           report in $work/bench.out
#   check_approvals_ledgered RECORD
#                           checks that RECORD (`bench decisions --record`) has APPROVED replies and
#                           that each has its ledger row with the same index and statement
#   check_decides_again LABEL
#                           checks that the node answers a plan with a signed decision within 15 s
#   check_ledger_verifies LABEL
#                           checks that `countersign ledger verify` accepts the ledger
#   free_port               prints a free loopback TCP port
#   metrics_listener        gives $config a metrics listener on a free port ($mport); before start_node
#   scrape PORT             prints the /metrics of the listener on PORT
#   metric NAME-AND-LABELS  its value in $work/metrics.txt (a scrape), empty when it is not there
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOCAL="$ROOT/.local"
BIN="${COUNTERSIGN_BIN:-$ROOT/.build/debug/countersign}"
work=$(mktemp -d); pid=""; db=""; config=""; port=""; mport=""
passed=0; failed=0

psql_super() {
  PGPASSWORD=$(cat "$LOCAL/secrets/pg-superuser-password") psql -X -q -v ON_ERROR_STOP=1 -h "$LOCAL/pg/run" -U postgres "$@"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

metrics_listener() {
  mport=$(free_port)
  sed -i "s|^  listen: \(.*\)|  listen: \1\n  metrics_listen: 127.0.0.1:$mport|" "$config"
}

scrape() { python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' "http://127.0.0.1:$1/metrics"; }

metric() { awk -v k="$1" '$1 == k { print $2; found = 1 } END { if (!found) print "" }' "$work/metrics.txt"; }

check() { if [ "$2" = 0 ]; then passed=$((passed+1)); echo "  ok    $1"; else failed=$((failed+1)); echo "  FAIL  $1"; fi; }

scratch_node() {
  db="cs_${1//-/_}_$$"
  config="$LOCAL/$1-$$.yaml"
  port=$(free_port)
  sed -e "s|^  listen: .*|  listen: 127.0.0.1:$port|" -e "s|^  advertise: .*|  advertise: 127.0.0.1:$port|" \
      -e "s|^  name: .*|  name: $1|" -e "s|^  database: countersign$|  database: $db|" \
      -e "/^  metrics_listen:/d" "$LOCAL/countersign.yaml" > "$config"
  psql_super -d postgres -c "CREATE DATABASE $db OWNER countersign_owner" >/dev/null
  psql_super -d "$db" -c "REVOKE ALL ON SCHEMA public FROM PUBLIC; GRANT USAGE ON SCHEMA public TO countersign_writer, countersign_reader; REVOKE CREATE ON SCHEMA public FROM countersign_writer, countersign_reader;" >/dev/null
  "$BIN" ledger migrate --config "$config" >/dev/null
}

start_node() {
  "$BIN" serve --config "$config" --log-level "$2" 2>"$1" &
  pid=$!
  for _ in $(seq 150); do
    "$BIN" health --config "$config" --ready >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  echo "the node did not become ready; its log:" >&2
  sed 's/^/    /' "$1" >&2
  return 1
}

stop_node() {
  [ -n "$pid" ] || return 0
  local rc=0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 200); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "the node did not stop within 20 s of SIGTERM: killed" >&2
    kill -9 "$pid" 2>/dev/null || true
    rc=1
  fi
  wait "$pid" 2>/dev/null || true
  pid=""
  return "$rc"
}

scratch_cleanup() {
  stop_node || true
  if [ -n "$db" ]; then
    psql_super -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
  [ -z "$config" ] || rm -f "$config"
}

start_load() {
  "$BIN" bench decisions --config "$config" --connections 8 --seconds "$1" --record "$work/approvals.tsv" >"$work/bench.out" 2>&1 &
  load=$!
}

check_approvals_ledgered() {
  local approved missing
  approved=$(awk -F'\t' '$3 == "APPROVED"' "$1" | sort > "$work/approved.tsv"; wc -l < "$work/approved.tsv")
  check "decisions were approved during the run ($approved)" "$([ "$approved" -gt 0 ]; echo $?)"
  psql_super -d "$db" -At -F $'\t' -c "SELECT request_id, idx, encode(sha256(statement), 'hex') FROM entries WHERE kind = 'decision'" \
    | sort > "$work/ledger.tsv"
  missing=$(awk -F'\t' 'NR == FNR { row[$1] = $2 "\t" $3; next } !($1 in row) || row[$1] != $2 "\t" $4' \
    "$work/ledger.tsv" "$work/approved.tsv" | wc -l)
  check "every APPROVED reply has its ledger row with the same statement and index (missing: $missing)" "$([ "$missing" -eq 0 ]; echo $?)"
}

check_decides_again() {
  local ok=1 rc
  for _ in $(seq 30); do
    rc=0
    "$BIN" plan submit --config "$config" --plan "${COUNTERSIGN_SHARED:-$ROOT/../shared}/fixtures/terraform/public/bridgecrewio_checkov-plan-change-keys.json" \
      --request "change the database security group rules" --owner maria.lopez@acmetech.example --deadline-ms 3000 >/dev/null 2>&1 || rc=$?
    # 0 APPROVED, 2 ESCALATE, 3 VETO: a signed, ledgered decision either way; 1 is UNAVAILABLE.
    if [ "$rc" -eq 0 ] || [ "$rc" -eq 2 ] || [ "$rc" -eq 3 ]; then ok=0; break; fi
    sleep 0.5
  done
  check "$1" "$ok"
}

check_ledger_verifies() {
  local rc=0
  "$BIN" keys export-public --config "$config" --first --output "$work/first.pem" >/dev/null
  "$BIN" ledger verify --config "$config" --trusted-key "$work/first.pem" >"$work/verify.out" 2>&1 || rc=$?
  check "$1" "$rc"
  [ "$rc" -eq 0 ] || sed 's/^/    /' "$work/verify.out"
}

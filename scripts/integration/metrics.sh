#!/usr/bin/env bash
# /metrics and /healthz of a real node. A scratch node with a metrics listener decides the design's
# scenarios (`countersign demo`: APPROVED, VETO and ESCALATE, overrides from the approvers), and
# refuses two handshakes: a client whose key is not pinned, and one from a CA it does not trust.
# Its /metrics must then count decisions by verdict and refused handshakes by reason, carry the
# decision, policy, sign and append latency histograms with one observation per decision, the
# ledger size and leader state 1; /healthz must answer 200, other paths 404 and other methods 405.
# A second node on the same ledger is the standby: leader 0, and /healthz 503 with the reason.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/scratch-node.bash"
standby_pid=""
standby_config=""
cleanup() {
  if [ -n "$standby_pid" ]; then kill "$standby_pid" 2>/dev/null || true; wait "$standby_pid" 2>/dev/null || true; fi
  [ -z "$standby_config" ] || rm -f "$standby_config"
  scratch_cleanup
}
trap cleanup EXIT

scratch_node metrics
metrics_listener
start_node "$work/serve.log" warning

at_least() { awk -v v="$1" -v n="$2" 'BEGIN { exit !(v != "" && v + 0 >= n + 0) }'; }
# status PORT METHOD PATH: the HTTP status and body of one request to a metrics listener.
status() {
  python3 - "$@" <<'PY'
import sys, urllib.request, urllib.error
port, method, path = sys.argv[1:4]
req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        print(r.status, r.read().decode().strip())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode().strip())
PY
}

echo "metrics: the scenarios through the real client, then two refused handshakes"
rc=0
"$BIN" demo --config "$config" --address "127.0.0.1:$port" >"$work/demo.log" 2>&1 || rc=$?
check "countersign demo ends every scenario as expected" "$rc"
[ "$rc" = 0 ] || sed 's/^/    /' "$work/demo.log"
plan="$work/plan.json"
python3 -c 'import json, sys; json.dump(json.load(open(sys.argv[1]))["request"]["plan"], open(sys.argv[2], "w"))' \
  "${COUNTERSIGN_SHARED:-$ROOT/../shared}/fixtures/scenarios/001-honest-ml-segment.json" "$plan"
submit() { "$BIN" plan submit --config "$config" --address "127.0.0.1:$port" --plan "$plan" \
             --request "Add a new microsegment for machine learning workloads with GPU instances" \
             --owner maria.lopez@acmetech.example --deadline-ms 5000 "$@" >>"$work/refused.log" 2>&1; }
rc=0; "$BIN" plan submit --config "$config" --address "127.0.0.1:$port" --plan "$plan" --request "x" \
  --owner maria.lopez@acmetech.example --identity unpinned >"$work/refused.out" 2>"$work/refused.err" || rc=$?
check "a client whose key is not pinned is refused (exit 1), saying so on stderr only" \
  "$([ "$rc" = 1 ] && [ ! -s "$work/refused.out" ] && grep -q "countersign plan submit: " "$work/refused.err"; echo $?)"
rc=0; submit --cert "$LOCAL/pki/rogue-client.crt" --key "$LOCAL/pki/rogue-client.key" || rc=$?
check "a client from an unknown CA is refused (exit 1)" "$([ "$rc" = 1 ]; echo $?)"

scrape "$mport" >"$work/metrics.txt"
approved=$(metric 'countersign_decisions_total{verdict="APPROVED"}')
veto=$(metric 'countersign_decisions_total{verdict="VETO"}')
escalate=$(metric 'countersign_decisions_total{verdict="ESCALATE"}')
echo "  decisions by verdict: APPROVED $approved, VETO $veto, ESCALATE $escalate"
check "decisions counted by verdict: some APPROVED" "$(at_least "$approved" 1; echo $?)"
check "decisions counted by verdict: some VETO" "$(at_least "$veto" 1; echo $?)"
check "decisions counted by verdict: some ESCALATE" "$(at_least "$escalate" 1; echo $?)"
total=$(awk -v a="$approved" -v v="$veto" -v e="$escalate" 'BEGIN { print a + v + e }')
for h in decision policy sign append; do
  count=$(metric "countersign_${h}_duration_seconds_count")
  inf=$(metric "countersign_${h}_duration_seconds_bucket{le=\"+Inf\"}")
  check "countersign_${h}_duration_seconds: a histogram with one observation per decision ($count, +Inf bucket $inf, decisions $total)" \
    "$([ -n "$count" ] && [ "$count" = "$inf" ] && at_least "$count" "$total"; echo $?)"
done
check "refused handshakes counted by reason: unpinned_spki" \
  "$(at_least "$(metric 'countersign_handshake_failures_total{reason="unpinned_spki"}')" 1; echo $?)"
check "refused handshakes counted by reason: unknown_ca" \
  "$(at_least "$(metric 'countersign_handshake_failures_total{reason="unknown_ca"}')" 1; echo $?)"
size=$(metric countersign_ledger_size)
rows=$(psql_super -d "$db" -Atc "SELECT count(*) FROM entries")
# The writer records the size after every commit: nothing is appended now, so it is exact.
check "countersign_ledger_size ($size) is the ledger's size ($rows entries)" \
  "$(at_least "$size" "$total" && awk -v s="$size" -v r="$rows" 'BEGIN { exit !(s + 0 == r + 0) }'; echo $?)"
check "countersign_leader is 1 on the node that holds the lease" "$([ "$(metric countersign_leader)" = 1.0 ] || [ "$(metric countersign_leader)" = 1 ]; echo $?)"
got=$(status "$mport" GET /healthz)
check "/healthz of the active node: 200 ok ($got)" "$([ "$got" = "200 ok" ]; echo $?)"
rc=0
"$BIN" health --config "$config" --address "127.0.0.1:$port" --identity auditor --json >"$work/health.json" || rc=$?
check "countersign health --json: JSON, active, the node's name" \
  "$([ "$rc" = 0 ] && python3 -c 'import json, sys; h = json.load(open(sys.argv[1])); sys.exit(not (h["role"] == "active" and h["node"] == "metrics" and h["ledger_available"]))' "$work/health.json"; echo $?)"
got=$(status "$mport" GET /nothing)
check "another path: 404 ($got)" "$([ "${got%% *}" = 404 ]; echo $?)"
got=$(status "$mport" POST /metrics)
check "another method: 405 ($got)" "$([ "${got%% *}" = 405 ]; echo $?)"

echo "metrics: a standby on the same ledger"
standby_config="$LOCAL/metrics-standby-$$.yaml"
sport=$(free_port); smport=$(free_port)
sed -e "s|^  listen: .*|  listen: 127.0.0.1:$sport|" -e "s|^  advertise: .*|  advertise: 127.0.0.1:$sport|" \
    -e "s|^  name: .*|  name: metrics-standby|" -e "s|^  metrics_listen: .*|  metrics_listen: 127.0.0.1:$smport|" \
    "$config" > "$standby_config"
"$BIN" serve --config "$standby_config" --log-level warning 2>"$work/standby.log" &
standby_pid=$!
got=""
for _ in $(seq 100); do
  got=$(status "$smport" GET /healthz 2>/dev/null || true)
  [ -z "$got" ] || break
  kill -0 "$standby_pid" 2>/dev/null || break
  sleep 0.2
done
check "/healthz of the standby: 503, naming the node that holds the lease ($got)" \
  "$(case "$got" in "503 "*"the lease is held by metrics (epoch "*) echo 0 ;; *) echo 1 ;; esac)"
scrape "$smport" >"$work/metrics.txt"
check "countersign_leader is 0 on the standby" "$([ "$(metric countersign_leader)" = 0.0 ] || [ "$(metric countersign_leader)" = 0 ]; echo $?)"
got=$(status "$mport" GET /healthz)
check "the active node is still ready beside it ($got)" "$([ "$got" = "200 ok" ]; echo $?)"

echo "metrics: $passed passed, $failed failed"
[ "$failed" = 0 ]

#!/usr/bin/env bash
# A flood of large plans against a real node: a protoc-generated Python client pipelines 600 calls
# of a 3.7 MB plan (2.2 GB) over 6 connections, far faster than the node evaluates them. Every
# call must be answered: decided, or refused at once with RESOURCE_EXHAUSTED naming
# limits.max_request_bytes_in_flight; the node's peak memory must stay far below what it was sent;
# the node must keep its ledger lease all along (large plans are evaluated off Swift's executor,
# where the renewal runs), count the refusals in /metrics, and decide again afterwards with a
# ledger that verifies. Then clients that send calls and read none of the replies: a reading client
# beside them must be refused while their unsent replies fill the same bound, and the node must
# decide again once they are gone. Then connections that each send most of a large frame and stop:
# the node must hold only the bound of frames still arriving, and leave the rest unread.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/scratch-node.bash"
trap scratch_cleanup EXIT
PY="$LOCAL/venv/bin/python"
CALLS=600
CONNECTIONS=6
PEAK_LIMIT_MB=1536

"$PY" -m grpc_tools.protoc -I"$ROOT/proto" --python_out="$work" countersign/v1/envelope.proto countersign/v1/audit.proto countersign/v1/custody.proto
"$BIN" plan bench --generate 6500 --out "$work/plan.json" >/dev/null
plan_bytes=$(stat -c %s "$work/plan.json")
plan_mb=$(awk -v b="$plan_bytes" 'BEGIN { printf "%.1f", b / 1e6 }')
sent_mb=$(( CALLS * plan_bytes / 1000000 ))
scratch_node flood
metrics_listener
start_node "$work/serve.log" info
echo "flood: $CALLS calls of a ${plan_mb} MB plan over $CONNECTIONS connections"
"$PY" "$ROOT/Tests/flood/flood.py" "$work" 127.0.0.1 "$port" "$LOCAL/pki" "$work/plan.json" "$CALLS" "$CONNECTIONS" | tee "$work/flood.out" | sed 's/^/    /'
peak_kb=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
echo "    the node's peak resident memory: $(( peak_kb / 1024 )) MB"

count() { awk -v k="$1" '$1 == k {print $2}' "$work/flood.out"; }
check "every call answered ($(count answered) of $CALLS)" "$([ "$(count answered)" = "$CALLS" ] && echo 0 || echo 1)"
refused=$(awk '$1 == "status" && $2 == 8 && /limits.max_request_bytes_in_flight|already holds/ {n += $3} END {print n + 0}' "$work/flood.out")
check "calls beyond the bound refused with RESOURCE_EXHAUSTED ($refused)" "$([ "$refused" -gt 0 ] && echo 0 || echo 1)"
decided=$(awk '$1 == "status" && $2 == 0 {n += $3} END {print n + 0}' "$work/flood.out")
check "calls within the bound decided ($decided)" "$([ "$decided" -gt 0 ] && echo 0 || echo 1)"
other=$(awk '$1 == "status" && $2 != 0 && $2 != 8 {n += $3} END {print n + 0}' "$work/flood.out")
check "no other answer (UNAVAILABLE would mean the lease was lost): $other" "$([ "$other" = 0 ] && echo 0 || echo 1)"
check "peak memory under $PEAK_LIMIT_MB MB for $sent_mb MB sent" "$([ $(( peak_kb / 1024 )) -lt $PEAK_LIMIT_MB ] && echo 0 || echo 1)"
lost_lease=$(grep -c '"lost the ledger lease"' "$work/serve.log" || true)
check "the node kept its ledger lease" "$([ "$lost_lease" = 0 ] && echo 0 || echo 1)"
scrape "$mport" >"$work/metrics.txt"
node_wide=$(metric 'countersign_calls_refused_total{reason="request_bytes_in_flight"}')
share=$(metric 'countersign_calls_refused_total{reason="connection_bytes_in_flight"}')
counted=$(( ${node_wide:-0} + ${share:-0} ))
check "countersign_calls_refused_total counts them (${node_wide:-absent} for the node's bound, ${share:-absent} for a connection's share)" \
  "$([ "$counted" = "$refused" ] && echo 0 || echo 1)"
check "the refusals were logged, not each one" "$([ "$(grep -c 'request bytes in flight at the limit' "$work/serve.log")" -lt "$refused" ] && echo 0 || echo 1)"
check_decides_again "the node decides after the flood"

# Clients that send and never read: the calls the node had read still answer, and their replies
# (here twice the size of the plan) count against the same bound until they are sent, so a
# reading client beside them is refused instead of the node holding them all.
python3 - "$work/buckets.json" <<'PY'
import json, sys
changes = [{"address": f"aws_s3_bucket.{'b' * 200}{i}", "mode": "managed", "type": "aws_s3_bucket", "name": f"{'b' * 200}{i}",
            "provider_name": "registry.terraform.io/hashicorp/aws",
            "change": {"actions": ["create"], "before": None, "after": {"bucket": f"b{i}", "tags": {"a": "b"}},
                       "after_unknown": {}, "after_sensitive": {}}} for i in range(1100)]
json.dump({"format_version": "1.2", "terraform_version": "1.6.0", "resource_changes": changes}, open(sys.argv[1], "w"))
PY
"$BIN" plan bench --generate 3 --out "$work/small.json" >/dev/null
echo "hoard: 8 connections send 40 calls each of a $(( $(stat -c %s "$work/buckets.json") / 1000 )) KB plan and read nothing"
"$PY" "$ROOT/Tests/flood/hoard.py" "$work" 127.0.0.1 "$port" "$LOCAL/pki" "$work/buckets.json" "$work/small.json" 40 8 20 \
  | tee "$work/hoard.out" | sed 's/^/    /'
check "a reading client beside them is refused RESOURCE_EXHAUSTED, the unsent replies counted" \
  "$(grep -q '^probe 8 .*replies not yet sent.*limits.max_request_bytes_in_flight' "$work/hoard.out"; echo $?)"
check "the hoarding connections were closed" "$(grep -qx closed "$work/hoard.out"; echo $?)"
peak_kb=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
echo "    the node's peak resident memory: $(( peak_kb / 1024 )) MB"
check "peak memory still under $PEAK_LIMIT_MB MB" "$([ $(( peak_kb / 1024 )) -lt $PEAK_LIMIT_MB ] && echo 0 || echo 1)"
check_decides_again "the node decides once they are gone"

# Frames sent in part: what the connections have sent of frames not yet complete is bounded too
# (by as much as limits.max_request_bytes_in_flight, 256 MiB here); the rest waits unread. The
# peak is reset first (clear_refs), so that it is this part's alone.
rss_kb=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
echo 5 > "/proc/$pid/clear_refs"
echo "partial: 600 connections each send 3.9 MB of a 4 MB frame and stop"
"$PY" "$ROOT/Tests/flood/partial.py" 127.0.0.1 "$port" "$LOCAL/pki" 600 3 | tee "$work/partial.out" | sed 's/^/    /'
peak_kb=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
grew_mb=$(( (peak_kb - rss_kb) / 1024 ))
echo "    the node's resident memory: $(( rss_kb / 1024 )) MB before, $(( peak_kb / 1024 )) MB at the peak"
check "the node grew by under 1,000 MB for 2,340 MB of frames sent in part (by $grew_mb MB)" "$([ "$grew_mb" -lt 1000 ] && echo 0 || echo 1)"
check "the connections were closed" "$(grep -qx closed "$work/partial.out"; echo $?)"
scrape "$mport" >"$work/metrics.txt"
paused=$(metric 'countersign_reads_paused_total{reason="incomplete_frame_bytes"}')
check "countersign_reads_paused_total counts the connections left unread (${paused:-absent})" "$([ "${paused:-0}" -gt 0 ] && echo 0 || echo 1)"
check_decides_again "the node decides after them"
check_ledger_verifies "the ledger verifies"
echo "flood: $passed passed, $failed failed"
[ "$failed" = 0 ]

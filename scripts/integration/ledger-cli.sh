#!/usr/bin/env bash
# The ledger's command line against a real node: `ledger checkpoint` prints the newest checkpoint,
# `ledger checkpoint --sign` signs one in the token when no node serves the ledger and refuses
# (naming the holder) while one does, `ledger prove` prints a proof that the hand check of
# docs/ledger.md accepts, and none of them prints PostgresNIO's "run() hasn't been called". Then an
# auditor over the wire: `audit decision` verifies one decision from the first key and keeps the
# checkpoint, `audit checkpoint --since` proves the grown ledger extends the kept ones, and
# `ledger verify --checkpoint` checks the whole ledger against them.
# Uses a database of its own and the dev cluster, token, keyring and certificates.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/scratch-node.bash"
trap scratch_cleanup EXIT
no_warning() { ! grep -q "hasn't been called" "$1"; echo $?; }

scratch_node cli-test
"$BIN" keys export-public --config "$config" --first --output "$work/first.pem" >/dev/null

echo "ledger-cli: no node serving"
rc=0; "$BIN" ledger checkpoint --config "$config" >"$work/out" 2>"$work/err" || rc=$?
check "ledger checkpoint on an empty ledger exits 2 and says there is none yet" "$([ "$rc" -eq 2 ] && grep -q "no checkpoint yet" "$work/err"; echo $?)"
rc=0; "$BIN" ledger checkpoint --sign --config "$config" >"$work/out" 2>"$work/err" || rc=$?
check "ledger checkpoint --sign signs one without a node (size 0)" "$([ "$rc" -eq 0 ] && sed -n 2p "$work/out" | grep -qx 0; echo $?)"
check "  … without PostgresNIO's run() warning" "$(no_warning "$work/err")"
lease=$(psql_super -d "$db" -At -c "SELECT holder, expires_at <= now() FROM lease")
check "  … and gives the lease back at once ($lease)" "$(case "$lease" in "countersign ledger checkpoint"*"|t") echo 0 ;; *) echo 1 ;; esac)"

echo "ledger-cli: a node serving"
# The node's checkpointer signs one every checkpoint_interval_ms while entries arrive: at the
# default (1 s) it could sign one between the decisions below and `checkpoint --sign`, which then
# has nothing to refuse. For that step the interval is the longest allowed; the node is then
# started again with 1 s for the step that waits for its checkpoint.
with_interval() { sed -i "/^  checkpoint_interval_ms:/d; s|^  origin: \(.*\)|  origin: \1\n  checkpoint_interval_ms: $1|" "$config"; }
with_interval 60000
start_node "$work/serve.log" error
for i in 1 2 3; do
  rc=0
  "$BIN" plan submit --config "$config" --plan "$ROOT/../shared/fixtures/terraform/public/bridgecrewio_checkov-plan-change-keys.json" \
    --request "change the database security group rules" --owner maria.lopez@acmetech.example >/dev/null 2>&1 || rc=$?
  [ "$rc" -eq 1 ] && echo "    plan submit $i: UNAVAILABLE"
done
size=$(psql_super -d "$db" -At -c "SELECT count(*) FROM entries")
check "decisions were ledgered ($size entries)" "$([ "$size" -ge 3 ]; echo $?)"
rc=0; "$BIN" ledger checkpoint --sign --config "$config" >"$work/out" 2>"$work/err" || rc=$?
check "ledger checkpoint --sign is refused while the node holds the lease, naming it" \
  "$([ "$rc" -eq 2 ] && grep -q "node 'cli-test' holds the ledger lease" "$work/err"; echo $?)"
[ "$rc" -eq 2 ] && grep -q "node 'cli-test' holds the ledger lease" "$work/err" || sed 's/^/    /' "$work/out" "$work/err"
rc=0
stop_node || rc=$?
check "the node stops within 20 s of SIGTERM" "$rc"
with_interval 1000
start_node "$work/serve.log" error
covered=1
for _ in $(seq 100); do  # the node's checkpointer has run (at most 1 s; 10 s on a slow machine)
  rc=0; "$BIN" ledger checkpoint --config "$config" >"$work/out" 2>"$work/err" || rc=$?
  if [ "$rc" -eq 0 ] && sed -n 2p "$work/out" | grep -qx "$size"; then covered=0; break; fi
  sleep 0.1
done
check "ledger checkpoint prints the node's checkpoint of every entry" "$covered"
check "  … without PostgresNIO's run() warning" "$(no_warning "$work/err")"
cp "$work/out" "$work/kept-checkpoint.txt"  # an auditor keeps it, to check the ledger against later
rc=0; "$BIN" ledger prove --config "$config" --index 1 >"$work/proof.json" 2>"$work/err" || rc=$?
check "ledger prove --index 1" "$rc"
check "  … without PostgresNIO's run() warning" "$(no_warning "$work/err")"
# The hand check of docs/ledger.md ("Checking a proof by hand"), with Python's standard library.
python3 - "$work/proof.json" >"$work/hand.out" 2>&1 <<'PY' && rc=0 || rc=$?
import base64, hashlib, json, sys
p = json.load(open(sys.argv[1]))
H = lambda b: hashlib.sha256(b).digest()
leaf = H(b"\x00" + base64.b64decode(p["statement_b64"]))
assert leaf.hex() == p["leaf_hash"]
fn, sn, r = p["index"], p["tree_size"] - 1, leaf
for h in map(bytes.fromhex, p["proof"]):
    assert sn > 0
    if fn & 1 or fn == sn:
        r = H(b"\x01" + h + r)
        while fn & 1 == 0 and fn != 0:
            fn >>= 1; sn >>= 1
    else:
        r = H(b"\x01" + r + h)
    fn >>= 1; sn >>= 1
assert sn == 0
origin, size, root_b64 = base64.b64decode(p["checkpoint_b64"]).decode().split("\n")[:3]
assert int(size) == p["tree_size"] and base64.b64decode(root_b64) == r
PY
check "  … which the hand check of docs/ledger.md accepts against the signed checkpoint" "$rc"
[ "$rc" -eq 0 ] || sed 's/^/    /' "$work/hand.out"

# An auditor over the wire, trusting only the first key: `countersign audit decision`.
plan="$ROOT/../shared/fixtures/terraform/public/bridgecrewio_checkov-plan-change-keys.json"
words="change the database security group rules"
"$BIN" plan submit --config "$config" --plan "$plan" --request "$words" --owner maria.lopez@acmetech.example \
  --request-id cli-audit >/dev/null 2>&1 || true
rc=0; "$BIN" audit decision --config "$config" --request-id cli-audit --first-key "$work/first.pem" --plan "$plan" \
  --request "$words" --keep-checkpoint "$work/audit-checkpoint.txt" >"$work/audit.out" 2>&1 || rc=$?
check "audit decision: keys, signature, statement, checkpoint and inclusion verify over the wire" \
  "$([ "$rc" -eq 0 ] && [ "$(grep -c '^ok ' "$work/audit.out")" -eq 5 ] && [ -s "$work/audit-checkpoint.txt" ]; echo $?)"
[ "$rc" -eq 0 ] || sed 's/^/    /' "$work/audit.out"
"$BIN" plan submit --config "$config" --plan "$plan" --request "$words" --owner maria.lopez@acmetech.example >/dev/null 2>&1 || true
grown=1
for _ in $(seq 100); do  # a checkpoint of the grown ledger (at most 1 s; 10 s on a slow machine)
  rc=0; "$BIN" audit checkpoint --config "$config" --first-key "$work/first.pem" --since "$work/kept-checkpoint.txt" \
    --since "$work/audit-checkpoint.txt" >"$work/audit.out" 2>&1 || rc=$?
  if [ "$rc" -eq 0 ] && ! grep -q "tree size $((size + 1))," "$work/audit.out"; then grown=0; break; fi
  sleep 0.1
done
check "audit checkpoint --since: the newest tree extends both kept checkpoints (consistency proofs)" \
  "$([ "$grown" -eq 0 ] && [ "$(grep -c '^ok      since .*extends its' "$work/audit.out")" -eq 2 ]; echo $?)"
[ "$grown" -eq 0 ] || sed 's/^/    /' "$work/audit.out"
sed "2s/.*/$((size + 5))/" "$work/audit-checkpoint.txt" > "$work/forged-checkpoint.txt"  # it claims more entries
rc=0; "$BIN" audit checkpoint --config "$config" --first-key "$work/first.pem" --since "$work/forged-checkpoint.txt" >"$work/audit.out" 2>&1 || rc=$?
check "  … and exits 1 for a kept checkpoint whose text was changed" \
  "$([ "$rc" -eq 1 ] && grep -q "^FAILED  since .*forged-checkpoint.txt: .*does not verify" "$work/audit.out"; echo $?)"
[ "$rc" -eq 1 ] || sed 's/^/    /' "$work/audit.out"
rc=0; "$BIN" audit decision --config "$config" --request-id cli-audit --first-key "$work/first.pem" \
  --request "other words" >"$work/audit.out" 2>&1 || rc=$?
check "  … and exits 1 naming the statement when it binds other words" \
  "$([ "$rc" -eq 1 ] && grep -q "^FAILED  statement: it binds other words" "$work/audit.out"; echo $?)"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 2>/dev/null | openssl pkey -pubout -out "$work/stranger.pem" 2>/dev/null
rc=0; "$BIN" audit decision --config "$config" --request-id cli-audit --first-key "$work/stranger.pem" >"$work/audit.out" 2>&1 || rc=$?
check "  … and when the decision's key does not follow from the first key given" \
  "$([ "$rc" -eq 1 ] && grep -q "^FAILED  decision: .*not in the verified key set" "$work/audit.out"; echo $?)"
[ "$rc" -eq 1 ] || sed 's/^/    /' "$work/audit.out"

rc=0
stop_node || rc=$?
check "the node stops within 20 s of SIGTERM" "$rc"
check "the node's log has no PostgresNIO run() warning either" "$(no_warning "$work/serve.log")"
rc=0; "$BIN" ledger verify --config "$config" --trusted-key "$work/first.pem" >"$work/verify.out" 2>&1 || rc=$?
check "ledger verify" "$rc"
[ "$rc" -eq 0 ] || sed 's/^/    /' "$work/verify.out"
rc=0; "$BIN" ledger verify --config "$config" --trusted-key "$work/first.pem" --checkpoint "$work/kept-checkpoint.txt" \
  --checkpoint "$work/audit-checkpoint.txt" >"$work/verify.out" 2>&1 || rc=$?
check "ledger verify --checkpoint (the ones kept earlier, by ledger checkpoint and by audit decision)" \
  "$([ "$rc" -eq 0 ] && grep -q "holds the tree of each checkpoint given (sizes $size, " "$work/verify.out"; echo $?)"
[ "$rc" -eq 0 ] || sed 's/^/    /' "$work/verify.out"
first=$(sed -n 's/^— .* signature \(.\).*/\1/p' "$work/kept-checkpoint.txt"); other=A; [ "$first" != A ] || other=B
sed -i "s/^\(— .* signature \)./\1$other/" "$work/kept-checkpoint.txt"  # the signature's first character changed
rc=0; "$BIN" ledger verify --config "$config" --trusted-key "$work/first.pem" --checkpoint "$work/kept-checkpoint.txt" >"$work/verify.out" 2>&1 || rc=$?
check "ledger verify --checkpoint refuses a kept checkpoint whose signature was changed" \
  "$([ "$rc" -eq 1 ] && grep -q "FAILED at index $((size - 1)): the signature of the checkpoint of size $size does not verify" "$work/verify.out"; echo $?)"
[ "$rc" -eq 1 ] || sed 's/^/    /' "$work/verify.out"
echo "ledger-cli: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

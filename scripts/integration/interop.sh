#!/usr/bin/env bash
# A protoc-generated Python client (no code shared with the server) against a real node: starts
# `countersign serve` on a free port with the dev certificates and token and a database of its own
# (so a running `make demo` instance is not disturbed), runs Tests/interop/client.py.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOCAL="$ROOT/.local"
BIN="${COUNTERSIGN_BIN:-$ROOT/.build/debug/countersign}"
PY="$LOCAL/venv/bin/python"
work=$(mktemp -d); pid=""
db="cs_interop_$$"
psql_super() {
  PGPASSWORD=$(cat "$LOCAL/secrets/pg-superuser-password") psql -X -q -v ON_ERROR_STOP=1 -h "$LOCAL/pg/run" -U postgres "$@"
}
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  wait 2>/dev/null
  psql_super -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work" "$LOCAL/interop.yaml"
}
trap cleanup EXIT

"$PY" -m grpc_tools.protoc -I"$ROOT/proto" --python_out="$work" \
  countersign/v1/envelope.proto countersign/v1/audit.proto countersign/v1/custody.proto
port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -e "s|^  listen: .*|  listen: 127.0.0.1:$port|" -e "s|^  advertise: .*|  advertise: 127.0.0.1:$port|" \
    -e "s|^  name: .*|  name: interop|" -e "s|^  database: countersign$|  database: $db|" \
    -e "/^  metrics_listen:/d" "$LOCAL/countersign.yaml" > "$LOCAL/interop.yaml"
psql_super -d postgres -c "CREATE DATABASE $db OWNER countersign_owner" >/dev/null
psql_super -d "$db" -c "REVOKE ALL ON SCHEMA public FROM PUBLIC; GRANT USAGE ON SCHEMA public TO countersign_writer, countersign_reader; REVOKE CREATE ON SCHEMA public FROM countersign_writer, countersign_reader;" >/dev/null
"$BIN" ledger migrate --config "$LOCAL/interop.yaml" >/dev/null
"$BIN" serve --config "$LOCAL/interop.yaml" --log-level warning 2>"$work/serve.log" &
pid=$!
for _ in $(seq 100); do
  "$BIN" health --config "$LOCAL/interop.yaml" --ready >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
  sleep 0.2
done
pin=$(awk '/server_spki_sha256:/ {print $2}' "$LOCAL/countersign.yaml")
shared="${COUNTERSIGN_SHARED:-$ROOT/../shared}"
"$PY" "$ROOT/Tests/interop/client.py" "$work" 127.0.0.1 "$port" "$LOCAL/pki" "$pin" \
  "$shared/fixtures/scenarios/006-isolate-instance-quarantine.json"

#!/usr/bin/env bash
# A protoc-generated Python client (no code shared with the server) against a real node: starts
# `countersign serve` on a free port with the dev certificates and token and a database of its own
# (so a running `make demo` instance is not disturbed), runs Tests/interop/client.py.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/scratch-node.bash"
trap scratch_cleanup EXIT
PY="$LOCAL/venv/bin/python"

"$PY" -m grpc_tools.protoc -I"$ROOT/proto" --python_out="$work" \
  countersign/v1/envelope.proto countersign/v1/audit.proto countersign/v1/custody.proto
scratch_node interop
start_node "$work/serve.log" warning
pin=$(awk '/server_spki_sha256:/ {print $2}' "$LOCAL/countersign.yaml")
shared="${COUNTERSIGN_SHARED:-$ROOT/../shared}"
"$PY" "$ROOT/Tests/interop/client.py" "$work" 127.0.0.1 "$port" "$LOCAL/pki" "$pin" \
  "$shared/fixtures/scenarios/006-isolate-instance-quarantine.json"

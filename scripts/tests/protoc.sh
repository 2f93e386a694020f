#!/usr/bin/env bash
# protoc must accept every schema file, and the committed golden vectors must be what the
# generator makes from today's schema.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY="$ROOT/.local/venv/bin/python"
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
mapfile -t files < <(cd "$ROOT/proto" && find . -name '*.proto' | sed 's|^\./||' | sort)
"$PY" -m grpc_tools.protoc -I"$ROOT/proto" --python_out="$out" --descriptor_set_out="$out/all.pb" "${files[@]}"
echo "protoc accepts ${#files[@]} schema files: ${files[*]}"
cp "$ROOT/Tests/CountersignWireTests/Vectors/golden.json" "$out/committed.json"
"$PY" "$ROOT/scripts/gen-golden-vectors" >/dev/null
if ! cmp -s "$out/committed.json" "$ROOT/Tests/CountersignWireTests/Vectors/golden.json"; then
  cp "$out/committed.json" "$ROOT/Tests/CountersignWireTests/Vectors/golden.json"
  echo "golden vectors are stale: run scripts/gen-golden-vectors and commit the result" >&2
  exit 1
fi
echo "golden vectors match the generator"

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
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOCAL="$ROOT/.local"
BIN="${COUNTERSIGN_BIN:-$ROOT/.build/debug/countersign}"
work=$(mktemp -d); pid=""; db=""; config=""; port=""
passed=0; failed=0

psql_super() {
  PGPASSWORD=$(cat "$LOCAL/secrets/pg-superuser-password") psql -X -q -v ON_ERROR_STOP=1 -h "$LOCAL/pg/run" -U postgres "$@"
}

check() { if [ "$2" = 0 ]; then passed=$((passed+1)); echo "  ok    $1"; else failed=$((failed+1)); echo "  FAIL  $1"; fi; }

scratch_node() {
  db="cs_${1//-/_}_$$"
  config="$LOCAL/$1-$$.yaml"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
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

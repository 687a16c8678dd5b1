#!/usr/bin/env bash
# Independent-client smoke test: the MCP Inspector CLI (npm @modelcontextprotocol/inspector,
# CLI mode, protocol 2025-11-25) against our stdio and Streamable HTTP servers.
#
#   scripts/inspector-smoke.sh            # needs node + npm; Python from .venv (or $PYTHON)
#
# Installs the Inspector once into a cache directory ($MANA_INSPECTOR_DIR, default
# ~/.cache/mana/inspector-$VERSION), seeds the demo into a temporary data directory, then for
# stdio and for HTTP (127.0.0.1, ephemeral port, demo token in --header) runs tools/list and
# tools/call me.listReferenceImages in the personal and the brand space and checks that only the
# active space's opted-in images come back. Exits non-zero on any failure; always cleans up.
#
# The default version is the one the README and `mana run` print (INSPECTOR_VERSION in
# mana_cli/commands/run.py; tests/test_readme_walkthrough.py keeps them equal): it declares
# Node >= 22.19 but its CLI works on Node 20 (npm only warns EBADENGINE), whereas an unpinned
# install on Node < 22.19 resolves to 0.15, which has no --header.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION="${INSPECTOR_VERSION:-2.12.0}"
PY="${PYTHON:-.venv/bin/python}"
CACHE="${MANA_INSPECTOR_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mana/inspector-$VERSION}"
STEP_TIMEOUT="${STEP_TIMEOUT:-90}"

command -v node >/dev/null || { echo "inspector-smoke: node is required" >&2; exit 1; }
command -v npm >/dev/null || { echo "inspector-smoke: npm is required" >&2; exit 1; }
[ -x "$PY" ] || { echo "inspector-smoke: no Python at $PY (run make setup or set PYTHON)" >&2; exit 1; }

INSPECTOR="$CACHE/node_modules/.bin/mcp-inspector"
if [ ! -x "$INSPECTOR" ]; then
  echo "# installing @modelcontextprotocol/inspector@$VERSION into $CACHE" >&2
  mkdir -p "$CACHE"
  [ -f "$CACHE/package.json" ] || echo '{"private": true}' > "$CACHE/package.json"
  timeout 600 npm install --prefix "$CACHE" --no-audit --no-fund --loglevel=error \
    "@modelcontextprotocol/inspector@$VERSION" >&2
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/mana-inspector.XXXXXX")"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

mana() { "$PY" -m mana_cli --data-dir "$WORK/data" "$@"; }
fail() { echo "inspector-smoke: FAIL: $*" >&2; exit 1; }
inspect() { timeout "$STEP_TIMEOUT" "$INSPECTOR" --cli "$@" 2>"$WORK/inspector.err" || {
  cat "$WORK/inspector.err" >&2; return 1; }; }

# expect FILE must-contain... ! must-not-contain...
expect() {
  local file="$1"; shift
  local negate=0
  for needle in "$@"; do
    if [ "$needle" = "!" ]; then negate=1; continue; fi
    if [ "$negate" = 1 ]; then
      ! grep -q -- "$needle" "$file" || fail "$(basename "$file") unexpectedly contains $needle"
    else
      grep -q -- "$needle" "$file" || fail "$(basename "$file") lacks $needle"
    fi
  done
}

echo "# seeding the demo into $WORK/data" >&2
mana init >/dev/null
mana seed demo >/dev/null

STDIO=("$PY" -m mana_cli --data-dir "$WORK/data" serve --stdio --as demo@mana.test)

echo "# stdio: tools/list" >&2
inspect "${STDIO[@]}" --method tools/list > "$WORK/stdio-list.json" || fail "stdio tools/list"
expect "$WORK/stdio-list.json" '"me.listReferenceImages"' '"habits.list"' '"outputSchema"'

echo "# stdio: me.listReferenceImages (personal)" >&2
inspect "${STDIO[@]}" --method tools/call --tool-name me.listReferenceImages \
  > "$WORK/stdio-personal.json" || fail "stdio tools/call (personal)"
expect "$WORK/stdio-personal.json" '"isError": false' ref_demo_face ref_demo_full \
  ! ref_demo_hands ref_demo_old ref_demo_brand_half

echo "# stdio: me.listReferenceImages (--space demo-studio)" >&2
inspect "${STDIO[@]}" --space demo-studio --method tools/call \
  --tool-name me.listReferenceImages > "$WORK/stdio-brand.json" || fail "stdio tools/call (brand)"
expect "$WORK/stdio-brand.json" '"isError": false' ref_demo_brand_half \
  ! ref_demo_brand_moodboard ref_demo_face

echo "# http: starting the server" >&2
PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
TOKEN="$(mana token issue --as demo@mana.test --password mana-demo-password --ttl 15m 2>/dev/null)"
timeout 600 "$PY" -m mana_cli --data-dir "$WORK/data" serve --http --port "$PORT" \
  > "$WORK/server.out" 2> "$WORK/server.err" &
SERVER_PID=$!
for _ in $(seq 1 150); do
  "$PY" -c "import sys, urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/health', timeout=1)" \
    2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.err" >&2; fail "server exited"; }
  sleep 0.2
done
URL="http://127.0.0.1:$PORT/mcp"
AUTH="Authorization: Bearer $TOKEN"

echo "# http: tools/list" >&2
inspect "$URL" --transport http --header "$AUTH" --method tools/list > "$WORK/http-list.json" \
  || fail "http tools/list"
expect "$WORK/http-list.json" '"me.listReferenceImages"' '"habits.list"'

echo "# http: tools/list in the brand space (no habits.*)" >&2
inspect "$URL" --transport http --header "$AUTH" --header "X-Mana-Space: demo-studio" \
  --method tools/list > "$WORK/http-brand-list.json" || fail "http tools/list (brand)"
expect "$WORK/http-brand-list.json" '"me.listReferenceImages"' ! '"habits.list"'

echo "# http: me.listReferenceImages (X-Mana-Space: demo-studio)" >&2
inspect "$URL" --transport http --header "$AUTH" --header "X-Mana-Space: demo-studio" \
  --method tools/call --tool-name me.listReferenceImages > "$WORK/http-brand.json" \
  || fail "http tools/call (brand)"
expect "$WORK/http-brand.json" '"isError": false' ref_demo_brand_half \
  ! ref_demo_brand_moodboard ref_demo_face

echo "# http: me.listReferenceImages (personal, kind=face)" >&2
inspect "$URL" --transport http --header "$AUTH" --method tools/call \
  --tool-name me.listReferenceImages --tool-arg kind=face > "$WORK/http-face.json" \
  || fail "http tools/call (personal, face)"
expect "$WORK/http-face.json" '"isError": false' ref_demo_face ! ref_demo_full ref_demo_old

echo "# http: a bad token is refused" >&2
if timeout "$STEP_TIMEOUT" "$INSPECTOR" --cli "$URL" --transport http \
  --header "Authorization: Bearer not-a-token" --method tools/list >"$WORK/http-bad.json" 2>&1; then
  fail "a bad token was accepted"
fi
expect "$WORK/http-bad.json" auth_required  # it saw the 401 and wants to log in

echo "inspector-smoke: OK (stdio and HTTP, Inspector $VERSION)"

#!/usr/bin/env bash
# The browser test: builds the page with trunk, serves it on localhost, and drives headless
# Chromium against it (web/test/browser.py). Needs trunk 0.21.14, wasm-bindgen-cli 0.2.130, the
# wasm32-unknown-unknown target and Debian's chromium; `.ci/run` installs them.
# Usage: bash web/test/run.sh [SCREENSHOT.png]
set -euo pipefail
cd "$(dirname "$0")/../.."
screenshot="${1:-${CARGO_TARGET_DIR:-target}/web-screenshot.png}"
dist="${CARGO_TARGET_DIR:-target}/web-dist"

echo "building the page with trunk (profile web) into $dist"
trunk build --dist "$dist"
ls -l "$dist"/*.wasm

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$dist" "$port" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/')" 2>/dev/null && break
    sleep 0.2
done

python3 web/test/browser.py "http://127.0.0.1:$port/" "$screenshot"
echo "screenshot: $screenshot"

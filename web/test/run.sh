#!/usr/bin/env bash
# The browser test: builds the page with trunk (and its post-build hook, web/optimize.sh: wasm-opt
# and precompressed copies), checks the bundle's size, serves it on localhost with its
# precompressed files (web/test/serve.py), and drives headless Chromium against it
# (web/test/browser.py). Needs trunk 0.21.14, wasm-bindgen-cli 0.2.130, the wasm32-unknown-unknown
# target, binaryen, brotli and Debian's chromium; `.ci/run` installs them.
# Usage: bash web/test/run.sh [SCREENSHOT.png]
set -euo pipefail
cd "$(dirname "$0")/../.."
screenshot="${1:-${CARGO_TARGET_DIR:-target}/web-screenshot.png}"
dist="${CARGO_TARGET_DIR:-target}/web-dist"

echo "building the page with trunk (profile web) into $dist"
trunk build --dist "$dist"

# The bundle people download: at most 30 MiB raw and 6 MiB brotli-compressed.
wasm=$(ls "$dist"/*.wasm)
raw=$(stat -c %s "$wasm")
gz=$(stat -c %s "$wasm.gz")
br=$(stat -c %s "$wasm.br")
mib() { python3 -c "print(f'{$1 / 1048576:.1f}')"; }
echo "bundle: $(basename "$wasm") $(mib "$raw") MiB raw, $(mib "$gz") MiB gzip, $(mib "$br") MiB brotli"
if [ "$raw" -gt $((30 << 20)) ] || [ "$br" -gt $((6 << 20)) ]; then
    echo "browser test FAILED: the bundle is over its goal of 30 MiB raw and 6 MiB brotli"
    exit 1
fi

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 web/test/serve.py "$dist" "$port" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/')" 2>/dev/null && break
    sleep 0.2
done

python3 web/test/browser.py "http://127.0.0.1:$port/" "$screenshot"
echo "screenshot: $screenshot"

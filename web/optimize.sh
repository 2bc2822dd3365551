#!/usr/bin/env bash
# Trunk's post-build hook (see Trunk.toml): shrinks the wasm module with binaryen's wasm-opt, then
# writes precompressed copies (.br and .gz) of the module and its JS beside them, for servers that
# send them as they are (web/test/serve.py does; so can nginx's gzip_static and brotli_static).
# INOS_WEB_FAST=1 skips all of it, for quicker rebuilds under `trunk serve`; INOS_WASM_OPT=skip
# skips wasm-opt alone (the CI's browser test: wasm-opt takes minutes in Node on 2 cores, and the
# test's size limits then hold for the module as rustc and wasm-bindgen made it).
#
# wasm-opt is binaryen 132 from npm (`npm ci --prefix web`, pinned in web/package.json): Debian's
# binaryen 108 mistypes wasm-bindgen's reference-typed function table, and the page then fails to
# start ("WebAssembly.Table.set(): Argument 1 is invalid for table").
set -euo pipefail
dir="${TRUNK_STAGING_DIR:?run by trunk as its post-build hook}"
if [ -n "${INOS_WEB_FAST:-}" ]; then
    echo "optimize.sh: INOS_WEB_FAST is set: the module is left as built"
    exit 0
fi
# The wasm features rustc emits for wasm32-unknown-unknown (Rust 1.95's defaults).
features=(--enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext
    --enable-mutable-globals --enable-reference-types --enable-multivalue)
wasm_opt="$(dirname "$0")/node_modules/.bin/wasm-opt"
for wasm in "$dir"/*.wasm; do
    if [ "${INOS_WASM_OPT:-}" = skip ]; then
        echo "optimize.sh: INOS_WASM_OPT=skip: no wasm-opt"
        break
    fi
    if [ ! -x "$wasm_opt" ]; then
        echo "optimize.sh: no wasm-opt: run \`npm ci --prefix web\` (binaryen); the module stays unoptimised" >&2
        break
    fi
    before=$(stat -c %s "$wasm")
    "$wasm_opt" -Oz "${features[@]}" "$wasm" -o "$wasm.opt"
    mv "$wasm.opt" "$wasm"
    echo "optimize.sh: wasm-opt -Oz: $before -> $(stat -c %s "$wasm") bytes"
done
for file in "$dir"/*.wasm "$dir"/*.js; do
    gzip -9 -k -f "$file"
    if command -v brotli >/dev/null; then
        brotli -q 11 -k -f "$file"
    fi
done

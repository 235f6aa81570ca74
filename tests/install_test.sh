#!/usr/bin/env bash
# The installed vksd as another program sees it: `cmake --install` into a temporary prefix, then
# a small program (tests/install_consumer) is built against it twice — through the CMake package
# (find_package(vksd), vksd::vksd) and through pkg-config — and run. It generates with the
# installed demo model; its pixels must equal `vksd generate` with the same settings.
# usage: install_test.sh BUILD_DIR
set -euo pipefail
BUILD=$(cd "$1" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
PREFIX=$TMP/prefix
unset VKSD_MODEL

cmake --install "$BUILD" --prefix "$PREFIX" >/dev/null
for f in include/vksd/vksd.h include/vksd/runtime/diffusion/pipeline.h lib/libvksd.a lib/cmake/vksd/vksdConfig.cmake \
         lib/pkgconfig/vksd.pc share/vksd/weights/demo/model.safetensors share/vksd/weights/demo/model.json bin/vksd; do
  [ -e "$PREFIX/$f" ] || { echo "FAIL: the install lacks $f"; exit 1; }
done
echo "ok   installed: library, headers, CMake package, pkg-config file, demo model, vksd"

# 1. CMake package.
cmake -S "$SRC/tests/install_consumer" -B "$TMP/cmake_build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$PREFIX" >"$TMP/cmake.log" 2>&1 || { cat "$TMP/cmake.log"; exit 1; }
cmake --build "$TMP/cmake_build" >"$TMP/build.log" 2>&1 || { cat "$TMP/build.log"; exit 1; }
grep -q "share/vksd/weights/demo/model.safetensors" "$TMP/cmake_build/build.ninja" \
  || { echo "FAIL: vksd_DEMO_MODEL does not point into the installed tree"; exit 1; }
"$TMP/cmake_build/consumer" "$TMP/cmake.png" | tail -2
echo "ok   find_package(vksd) consumer built and generated"

# 2. pkg-config (the compiler line a Makefile user writes).
export PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig
DATADIR=$(pkg-config --variable=datadir vksd)
# shellcheck disable=SC2046
g++ -std=c++20 -O1 "$SRC/tests/install_consumer/main.cpp" -o "$TMP/pc_consumer" \
    -DVKSD_DEMO_MODEL="\"$DATADIR/weights/demo/model.safetensors\"" $(pkg-config --cflags --libs vksd)
"$TMP/pc_consumer" "$TMP/pc.png" | tail -1
echo "ok   pkg-config consumer built and generated"

# 3. The installed vksd uses the installed demo model (not the source tree's): `vksd serve` says
#    which file it loaded in /sdapi/v1/sd-models.
"$PREFIX/bin/vksd" serve --port 0 >"$TMP/serve.log" 2>&1 &
SERVE_PID=$!
for _ in $(seq 600); do grep -q "listening on" "$TMP/serve.log" && break; sleep 0.5; done
PORT=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$TMP/serve.log")
MODELS=$(curl -s "http://127.0.0.1:$PORT/sdapi/v1/sd-models" || true)
kill "$SERVE_PID"; wait "$SERVE_PID" || true
case "$MODELS" in
  *"\"filename\":\"$PREFIX/share/vksd/weights/demo/model.safetensors\""*) echo "ok   the installed vksd loads the installed demo model" ;;
  *) echo "FAIL: the installed vksd serve did not load $PREFIX/share/vksd/weights/demo: $MODELS"; cat "$TMP/serve.log"; exit 1 ;;
esac

# 4. The same image as the command-line tool makes.
"$BUILD/vksd" generate -p "red apple" --steps 6 --sampler euler --cfg-scale 5 --seed 42 -o "$TMP/cli.png" 2>/dev/null
python3 "$SRC/tests/png_read.py" "$TMP/cmake.png" "$TMP/cli.png"
python3 "$SRC/tests/png_read.py" "$TMP/pc.png" "$TMP/cli.png"
echo "all install checks passed"

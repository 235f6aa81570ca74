#!/usr/bin/env bash
# Set up, build and run every test on the local Vulkan device (lavapipe on machines without a
# GPU) with the Khronos validation layer and synchronization validation on.
set -euo pipefail
cd "$(dirname "$0")/.."
# ctest's test list is split at ';', so a test name with one would silently run nothing.
if grep -n 'TEST_CASE("[^"]*;' tests/*.cpp; then
  echo "test.sh: test names must not contain ';' (ctest splits them into tests that run nothing)" >&2
  exit 1
fi
bash scripts/build.sh
cd build
ctest --output-on-failure -j"$(nproc)" --timeout 900 "$@"

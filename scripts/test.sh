#!/usr/bin/env bash
# Set up, build and run every test on the local Vulkan device (lavapipe on machines without a
# GPU) with the Khronos validation layer and synchronization validation on.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
cd build
ctest --output-on-failure -j"$(nproc)" --timeout 900 "$@"

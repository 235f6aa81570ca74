#!/usr/bin/env bash
# The main job: set up, build, then run it. Until the generator lands this runs the op benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
./build/vksd devices
if [ -x build/vksd_bench ]; then ./build/vksd_bench "$@"; fi

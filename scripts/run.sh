#!/usr/bin/env bash
# The main job: set up, build, then run it. With the embedded demo model (weights/demo/, trained
# and exported as weights/README.md describes) that is `vksd generate -p "red apple"`; until the
# model exists it lists the devices and runs the op benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
if [ -f weights/demo/model.safetensors ]; then
  mkdir -p out
  ./build/vksd generate -p "red apple" -o out/red_apple.png
  echo "run: the demo model's image for \"red apple\" is in $(pwd)/out/red_apple.png"
else
  echo "run: the demo model is not trained yet (weights/demo/model.safetensors is missing; see weights/README.md);"
  echo "run: listing devices and running the op benchmark instead"
  ./build/vksd devices
  if [ -x build/vksd_bench ]; then ./build/vksd_bench "$@"; fi
fi

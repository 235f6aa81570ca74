#!/usr/bin/env bash
# The main job: set up, build, then run it. Where a display exists that is the viewer
# (`vksd view`, with the embedded demo model); without one, a headless generation with the demo
# model (`vksd generate -p "red apple"`). VKSD_HEADLESS=1 forces the headless job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
if [ "${VKSD_HEADLESS:-0}" != 1 ] && { [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; }; then
  echo "run: opening the viewer (vksd view) with the demo model; type a prompt and press Generate"
  exec ./build/vksd view -p "red apple" "$@"
fi
echo "run: no display (DISPLAY/WAYLAND_DISPLAY unset), so no viewer window: generating headless instead"
mkdir -p out
./build/vksd generate -p "red apple" -o out/red_apple.png "$@"
echo "run: the demo model's image for \"red apple\" is in $(pwd)/out/red_apple.png"
echo "run: with a display, this command opens the viewer; headless screenshots: vksd view --help"

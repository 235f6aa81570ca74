#!/usr/bin/env bash
# Regenerates the viewer screenshots in docs/images/viewer/ with the headless mode of
# `vksd view` under Xvfb (started here when no DISPLAY is set). Needs a build (scripts/build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/images/viewer
mkdir -p "$out"
if [ -z "${DISPLAY:-}" ]; then
  Xvfb :93 -screen 0 1600x1000x24 -nolisten tcp &
  xvfb=$!
  trap 'kill $xvfb' EXIT
  export DISPLAY=:93
  sleep 1
fi
run=(./build/vksd view --window 1280x800 -p "grinning face, dark skin tone" --steps 20 --seed 42 --sampler ddim --cfg-scale 5)
"${run[@]}" --stop-at 6 --screenshot "$out/running.png"
"${run[@]}" --screenshot "$out/done.png"
for p in "$@"; do  # teaching panels: scripts/viewer_screenshots.sh tokens latent ...
  ./build/vksd view --window 1600x1000 -p "red apple, (smiling:1.2)" --steps 20 --seed 42 --sampler ddim \
    --cfg-scale 5 --stop-at 12 --panel "$p" --screenshot "$out/panel_$p.png"
done

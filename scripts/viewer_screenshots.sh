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
if [ $# -eq 0 ]; then
  "${run[@]}" --stop-at 6 --screenshot "$out/running.png"
  "${run[@]}" --screenshot "$out/done.png"
fi
# Teaching panels: scripts/viewer_screenshots.sh [NAME ...] (all eight when none is named).
# Each panel is shot mid-run (step 12 of 20) or, where it shows a finished run, at the end.
panel_flags() {  # the settings each panel is shown with
  case "$1" in
    tokens|latent|schedule|hood) more=(--stop-at 12) ;;
    attention) more=(--stop-at 12 --panel-set attention.token=2) ;;  # token 2: "apple"
    guidance) more=(--stop-at 12 --panel-set guidance.scale=9) ;;
    compare) more=(--panel-set "compare.prompt_b=green apple, (smiling:1.2)" --panel-set compare.run=1) ;;
    forward) more=(--panel-set forward.t=500) ;;
    *) echo "unknown panel: $1" >&2; exit 2 ;;
  esac
}
panels=("$@")
[ ${#panels[@]} -gt 0 ] || panels=(tokens latent schedule attention guidance compare forward hood)
for p in "${panels[@]}"; do
  panel_flags "$p"
  ./build/vksd view --window 1600x1000 -p "red apple, (smiling:1.2)" --steps 20 --seed 42 --sampler ddim \
    --cfg-scale 5 --panel "$p" "${more[@]}" --screenshot "$out/panel_$p.png"
done

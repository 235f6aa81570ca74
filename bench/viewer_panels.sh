#!/usr/bin/env bash
# What the teaching panels cost (issue 11): the demo model, 20 DDIM steps, the same run three
# ways, alternating, R rounds (default 3):
#   cli     vksd generate --json            (sample_ms: the sampler loop, UNet included)
#   closed  vksd view, every panel closed   (sample_ms of the viewer's run, --stats)
#   open    vksd view, all eight panels open (attention maps and per-dispatch timestamps on)
# Prints one line per run and the median per way. Needs a build and a display (Xvfb :94 is
# started when DISPLAY is unset).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
if [ -z "${DISPLAY:-}" ]; then
  Xvfb :94 -screen 0 1600x1000x24 -nolisten tcp &
  xvfb=$!
  trap 'kill $xvfb' EXIT
  export DISPLAY=:94
  sleep 1
fi
tmp=$(mktemp -d)
run=(-p "red apple" --steps 20 --seed 42 --sampler ddim --cfg-scale 5)
all=()
for p in tokens latent schedule attention guidance compare forward hood; do all+=(--panel "$p"); done
declare -A ms
for r in $(seq "$rounds"); do
  c=$(./build/vksd generate "${run[@]}" -o "$tmp/g.png" --json 2>/dev/null | grep '"event":"done"' |
      sed 's/.*"sample_ms":\([0-9.]*\).*/\1/')
  ./build/vksd view "${run[@]}" --window 1600x1000 --screenshot "$tmp/c.png" --stats "$tmp/c.json" >/dev/null 2>&1
  o_=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["run"]["sample_ms"])' "$tmp/c.json")
  ./build/vksd view "${run[@]}" --window 1600x1000 "${all[@]}" --screenshot "$tmp/o.png" --stats "$tmp/o.json" >/dev/null 2>&1
  op=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["run"]["sample_ms"])' "$tmp/o.json")
  echo "round $r: sample_ms cli $c  closed $o_  open $op  (load $(cut -d' ' -f1 /proc/loadavg))"
  ms[cli]+="$c "; ms[closed]+="$o_ "; ms[open]+="$op "
done
for k in cli closed open; do
  echo "median $k: $(echo ${ms[$k]} | tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') ms"
done
rm -rf "$tmp"

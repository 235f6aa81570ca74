#!/usr/bin/env bash
# The guidance sweep shown in README.md (docs/images/demo/guidance_sweep.png): one prompt and seed
# at CFG scales 0 (the unconditional prediction alone: the model's "average emoji"), 1 (the
# prompt without guidance), 3, 5, 7, 10 and 15, side by side (README.md names the scales).
# Usage: bash weights/guidance_sweep.sh [MODEL] [PROMPT]   (default: the demo model, "red apple")
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-weights/demo/model.safetensors}
prompt=${2:-red apple, apple, food fruit, food & drink, twitter style}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
scales=(0 1 3 5 7 10 15)
for s in "${scales[@]}"; do
  ./build/vksd generate -m "$model" -p "$prompt" --steps 20 --sampler ddim --cfg-scale "$s" --seed 42 \
    -o "$tmp/cfg_$s.png" > /dev/null 2>&1
done
# Side by side at 2x with 4-pixel gaps (Debian's python3-pil).
/usr/bin/python3 - "$tmp" docs/images/demo/guidance_sweep.png "${scales[@]}" <<'PY'
import sys
from PIL import Image
tmp, out, scales = sys.argv[1], sys.argv[2], sys.argv[3:]
tiles = [Image.open(f"{tmp}/cfg_{s}.png").convert("RGB") for s in scales]
w, h = tiles[0].size
sheet = Image.new("RGB", (len(tiles) * (2 * w + 4) + 4, 2 * h + 8), (40, 40, 40))
for i, t in enumerate(tiles):
    sheet.paste(t.resize((2 * w, 2 * h), Image.NEAREST), (4 + i * (2 * w + 4), 4))
sheet.save(out)
PY
echo "docs/images/demo/guidance_sweep.png: \"$prompt\", seed 42, DDIM 20 steps, CFG ${scales[*]}"

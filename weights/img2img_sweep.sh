#!/usr/bin/env bash
# The img2img strength sweep in docs/teaching.md (docs/images/demo/img2img_strength.png): the
# demo model's "red apple" (seed 42) repainted as "dog face" at strengths 0.1 ... 1, with the
# mean absolute difference (8-bit levels) of each result to the apple and to the plain txt2img
# dog of the same seed. DDIM 20 steps, guidance 5. Needs Debian's python3-pil.
# Usage: bash weights/img2img_sweep.sh [MODEL]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-weights/demo/model.safetensors}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gen() { ${VKSD:-./build/vksd} generate -m "$model" --steps 20 --sampler ddim --cfg-scale 5 --seed 42 "$@" > /dev/null 2>&1; }
gen -p "red apple, apple, food fruit, food & drink, twitter style" -o "$tmp/init.png"
gen -p "dog face" -o "$tmp/target.png"
strengths=(0.1 0.2 0.3 0.5 0.75 1.0)
for s in "${strengths[@]}"; do gen -p "dog face" --init-img "$tmp/init.png" --strength "$s" -o "$tmp/s_$s.png"; done
/usr/bin/python3 - "$tmp" docs/images/demo/img2img_strength.png "${strengths[@]}" <<'PY'
import sys
from PIL import Image
tmp, out, strengths = sys.argv[1], sys.argv[2], sys.argv[3:]
def load(name): return Image.open(f"{tmp}/{name}.png").convert("RGB")
def diff(a, b):
    pa, pb = list(a.getdata()), list(b.getdata())
    return sum(abs(x - y) for p, q in zip(pa, pb) for x, y in zip(p, q)) / (3 * len(pa))
init, target = load("init"), load("target")
tiles = [init] + [load(f"s_{s}") for s in strengths] + [target]
print("init vs txt2img dog: %.1f" % diff(init, target))
for s, t in zip(strengths, tiles[1:-1]):
    print("strength %s: %.1f from the apple, %.1f from the txt2img dog" % (s, diff(t, init), diff(t, target)))
w, h = init.size
sheet = Image.new("RGB", (len(tiles) * (2 * w + 4) + 4, 2 * h + 8), (40, 40, 40))
for i, t in enumerate(tiles):
    sheet.paste(t.resize((2 * w, 2 * h), Image.NEAREST), (4 + i * (2 * w + 4), 4))
sheet.save(out)
PY

#!/usr/bin/env bash
# Regenerates the demo model's example images shown in README.md (docs/images/demo/): captions
# from the training set, and compositions that are NOT in it (seen words, unseen combinations).
# Usage: bash weights/examples.sh [MODEL]   (default: the embedded demo model)
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-weights/demo/model.safetensors}
out=docs/images/demo
mkdir -p "$out"
# name|prompt
examples=(
  "train_apple|red apple, apple, food fruit, food & drink, twitter style"
  "train_wave|waving hand sign, dark skin tone, wave, hand fingers open, people & body, google style"
  "train_dog|dog face"
  "compose_dog_dark|dog face, dark skin tone"
  "compose_dog_light|dog face, light skin tone"
  "compose_face_tone|grinning face, dark skin tone"
)
for e in "${examples[@]}"; do
  name=${e%%|*}
  prompt=${e#*|}
  kind="a training caption"
  case $name in compose_*) kind="not in the training set: seen words, unseen combination" ;; esac
  if [[ $name == compose_* && -f weights/data/captions.txt ]]; then
    # Every part must be a field of some training caption, and no caption may have them all.
    awk -v p="$prompt" 'BEGIN { n = split(p, want, ", ") }
      { m = split($0, f, ", "); hits = 0
        for (i = 1; i <= n; i++) { for (j = 1; j <= m; j++) if (f[j] == want[i]) { seen[i] = 1; hits++; break } }
        if (hits == n) all++ }
      END { for (i = 1; i <= n; i++) if (!seen[i]) { print "examples: \"" want[i] "\" is in no training caption" > "/dev/stderr"; exit 1 }
            if (all) { print "examples: \"" p "\" is a training combination" > "/dev/stderr"; exit 1 } }' \
      weights/data/captions.txt
  fi
  ./build/vksd generate -m "$model" -p "$prompt" --steps 20 --sampler ddim --cfg-scale 5 --seed 42 \
    -o "$out/$name.png" > /dev/null 2>&1
  echo "$name.png: \"$prompt\" ($kind)"
done

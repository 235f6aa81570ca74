#!/bin/bash
# This workplace's device tool lends, to some sessions, an NVIDIA H100 machine that has PyTorch
# but none of our build dependencies, for 15 minutes. This script makes the most of one call:
# continue a demo run's diffusion training on CUDA and meanwhile run vksd's tests on the NVIDIA
# Vulkan driver, then vksd's and PyTorch's benchmarks on that GPU.
#
#   bash bench/device_check.sh prepare [RUN]    here: fills the folders the call carries
#   device run, carry [".gl", "devcheck", "weights/runs/RUN/device"]:
#       OUT=$OUT RUN=f8 SECS=330 bash bench/device_check.sh
#   then here: weights/train_device.py unpack --run RUN --from <files_at>
#
# Carried: .gl/ (the Vulkan loader and the GL vendor-neutral libraries NVIDIA's ICD,
# libGLX_nvidia, needs: without them the loader finds no driver), devcheck/ (vksd, vksd_tests,
# vksd_bench built here - glibc 2.36, so they run on the machine's newer one - libutf8proc, the
# validation layer, xz'd), the run's train_device.py pack. At most 8 files come back: 4 weight
# chunks, the loss log, train.log, tests.log, bench.log.
set -u
if [ "${1:-}" = prepare ]; then
  RUN=${2:-f8}
  mkdir -p .gl /tmp/amd64/partial devcheck/bin devcheck/lib devcheck/layer
  grep -qx /devcheck/ .git/info/exclude 2>/dev/null || echo /devcheck/ >> .git/info/exclude
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  apt-get $o update > /dev/null
  (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
  cp build/vksd build/vksd_tests build/vksd_bench devcheck/bin/
  cp -L /lib/x86_64-linux-gnu/libutf8proc.so.2 devcheck/lib/
  xz -T1 -3 -c /usr/lib/x86_64-linux-gnu/libVkLayer_khronos_validation.so > devcheck/layer/libVkLayer_khronos_validation.so.xz
  sed 's#"library_path": "[^"]*"#"library_path": "./libVkLayer_khronos_validation.so"#' \
    /usr/share/vulkan/explicit_layer.d/VkLayer_khronos_validation.json > devcheck/layer/VkLayer_khronos_validation.json
  /usr/bin/python3 weights/train_device.py pack --run "$RUN"
  du -sh .gl devcheck "weights/runs/$RUN/device"
  exit
fi

RUN=${RUN:-f8}
SECS=${SECS:-330}
export PYTHONUNBUFFERED=1
nvidia-smi -L
( python3 weights/train_device.py train --run "$RUN" --out "$OUT" --seconds "$SECS" > "$OUT/train.log" 2>&1
  echo "train rc=$?" >> "$OUT/train.log" ) &
TRAIN=$!

for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
xz -d -k -f devcheck/layer/libVkLayer_khronos_validation.so.xz
export LD_LIBRARY_PATH=$PWD/devcheck/lib VK_LAYER_PATH=$PWD/devcheck/layer
if ! ls /usr/share/vulkan/icd.d/*nvidia* /etc/vulkan/icd.d/*nvidia* > /dev/null 2>&1; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
B=devcheck/bin
$B/vksd devices > "$OUT/tests.log" 2>&1
# The reference vectors (../shared) and the CLI binary's build path do not travel: those tests fail
# with "reference data missing" / an empty vksd_binary(); every other test compares the kernels
# with CPU references, with validation (synchronization included) on.
VKSD_VALIDATION=1 VKSD_SHARED_DIR=/nonexistent timeout 240 $B/vksd_tests >> "$OUT/tests.log" 2>&1
echo "tests rc=$?" >> "$OUT/tests.log"

wait $TRAIN
tail -n 4 "$OUT/train.log"
{ timeout 45 $B/vksd_bench --reps 20; echo "rc=$?"; timeout 45 $B/vksd_bench --f16 --reps 20; echo "rc=$?"
  timeout 30 $B/vksd_bench step --reps 20; echo "rc=$?"
  python3 bench/torch_baseline.py --device cuda; python3 bench/torch_baseline.py --device cuda --dtype float16
} > "$OUT/bench.log" 2>&1
tail -n 3 "$OUT/tests.log"

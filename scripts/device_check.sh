#!/usr/bin/env bash
# The GPU check of issue 12, in one call of the `device` machine (an NVIDIA GPU in a bare image
# with CMake, ninja and PyTorch-CUDA but no Vulkan SDK, nothing to download). Two halves:
#
#   here (any Debian machine with the project's dependencies):
#     bash scripts/device_check.sh --prepare
#       builds build-device/ (Release, no viewer: the SPIR-V is embedded, nothing to compile
#       there), copies the libraries vksd links that a bare image lacks into build-device/lib,
#       puts the Vulkan loader and validation layer .debs in .gl/ and the test vectors the suite
#       reads in shared/
#       (all three git-ignored through .git/info/exclude; about 50 MiB with the SD 1.x vectors).
#   there (the device tool's `run`, carry [".gl", "build-device"], shared/ travels by itself):
#     bash scripts/device_check.sh
#       brings the loader, lists the devices, runs the matrix-unit ops' tests, the test suite
#       on the GPU, `vksd bench` at 512² (fp16, batch 1 and 2; the UNet also without the
#       matrix unit) and PyTorch-CUDA fp16 on the same UNet and checkpoint.
#
# Results go to $OUT (the device tool's folder), else out/device/: devices.txt,
# matrix_unit_tests.log, tests.log, bench.txt, bench.json, bench_scalar.json, torch_b1.json,
# torch_b2.json, summary.txt. Run locally without
# --prepare it checks the same steps on this machine's driver (lavapipe: slow; use --quick).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

if [[ "${1:-}" == "--prepare" ]]; then
  set -e
  for p in /.gl/ /build-device/ /shared/; do grep -qxF "$p" .git/info/exclude || echo "$p" >> .git/info/exclude; done
  launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  cmake -S . -B build-device -G Ninja -DCMAKE_BUILD_TYPE=Release -DVKSD_VIEWER=OFF "${launcher[@]}" >/dev/null
  ninja -C build-device vksd vksd_tests
  mkdir -p build-device/lib
  # Libraries outside glibc/libstdc++ that a bare image may lack (the loader comes from .gl).
  for b in build-device/vksd build-device/vksd_tests; do
    ldd "$b" | awk '/=> \//{print $3}' | grep -vE '/(libc|libm|libdl|libpthread|librt|libgcc_s|libstdc\+\+|libvulkan|ld-linux)[.-]' |
      xargs -r -I{} cp -Lu {} build-device/lib/
  done
  # Only what runs travels (the device tool carries 64 MiB in all): no objects or archives.
  find build-device \( -name '*.o' -o -name '*.a' \) -delete
  mkdir -p .gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  if ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
    apt-get $o update >/dev/null && (cd .gl && apt-get $o download libvulkan1)
  fi
  # The validation layer every test runs under: unpacked apart from / there (layers/).
  mkdir -p .gl/layers
  ls .gl/layers/vulkan-validationlayers_*.deb >/dev/null 2>&1 || (cd .gl/layers && apt-get $o download vulkan-validationlayers)
  mkdir -p shared/vectors shared/clip
  cp -ru ../shared/vectors/tiny ../shared/vectors/README.md ../shared/vectors/tokenizer_cases.json shared/vectors/
  cp -ru ../shared/clip/. shared/clip/
  du -sh .gl build-device shared
  exit 0
fi

quick=0
[[ "${1:-}" == "--quick" ]] && quick=1
out=${OUT:-$root/out/device}
mkdir -p "$out"
log() { echo "$*" | tee -a "$out/summary.txt"; }
: > "$out/summary.txt"

# The Vulkan loader, where the image has none, and NVIDIA's driver manifest.
if ! ldconfig -p | grep -q libvulkan.so.1 && ls .gl/*.deb >/dev/null 2>&1; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
if ls .gl/layers/*.deb >/dev/null 2>&1 && [[ ! -f /usr/share/vulkan/explicit_layer.d/VkLayer_khronos_validation.json ]]; then
  mkdir -p /tmp/vklayers && dpkg -x .gl/layers/*.deb /tmp/vklayers
  export VK_ADD_LAYER_PATH=/tmp/vklayers/usr/share/vulkan/explicit_layer.d
  export LD_LIBRARY_PATH=/tmp/vklayers/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
nv=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[[ -f $nv && -z "${VK_DRIVER_FILES:-}" ]] && export VK_DRIVER_FILES=$nv
bin=$root/build-device
[[ -x $bin/vksd ]] || bin=$root/build
# The tests find vksd and the sources at the paths they were built at: give them that path.
built_at=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$bin/CMakeCache.txt" 2>/dev/null)
if [[ -n $built_at && ! -e $built_at ]]; then mkdir -p "$(dirname "$built_at")" && ln -s "$root" "$built_at"; fi
export LD_LIBRARY_PATH=$bin/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export VKSD_SHARED_DIR=${VKSD_SHARED_DIR:-$root/shared}
[[ -d $VKSD_SHARED_DIR/vectors ]] || export VKSD_SHARED_DIR=$root/../shared
export XDG_CACHE_HOME=${XDG_CACHE_HOME:-/tmp/vksd-cache}

log "vksd device check, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -m), binaries from $bin"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$out/summary.txt"
"$bin/vksd" devices --check > "$out/devices.txt" 2>&1
log "vksd devices --check: rc $? ($(grep -m1 -i -E 'nvidia|llvmpipe|amd|intel' "$out/devices.txt" || echo 'no device line'); $(grep -m1 'matrix unit check' "$out/devices.txt" || echo 'no check line'))"

# First the ops the matrix unit takes (cooperative matrices, where `vksd devices` above says
# the driver offers them; the profile picks them by itself), against their double references.
t0=$(date +%s)
timeout 120 "$bin/vksd_tests" -tc='linear*,matmul*,conv2d*,matrix unit*,device profile*,shaders*' > "$out/matrix_unit_tests.log" 2>&1
log "matrix-unit ops: rc $? in $(( $(date +%s) - t0 )) s: $(grep -m1 'kernels:' "$out/devices.txt"); $(tail -2 "$out/matrix_unit_tests.log" | head -1)"

# The test suite on this device, through ctest (one line per test, so a run cut short still
# says which passed), under the validation layer brought above. Bounded, so that the bench
# still runs inside one call.
t0=$(date +%s)
timeout $((quick ? 240 : 300)) ctest --test-dir "$bin" -j "$(nproc)" --timeout 200 > "$out/tests.log" 2>&1
log "tests: rc $? in $(( $(date +%s) - t0 )) s: $(grep -c ' Passed ' "$out/tests.log") passed, $(grep -cE '\*\*\*(Failed|Timeout)|Exception' "$out/tests.log") failed (tests.log)"

# vksd bench at SD 1.5 512², fp16, batch 1 and 2 (random weights, written once).
sizes=512 batches=1,2 parts=unet,text,vae,generate,matmul
((quick)) && sizes=256 batches=1 parts=unet,matmul
t0=$(date +%s)
timeout 420 "$bin/vksd" bench --parts $parts --sizes $sizes --dtypes fp16 --batches $batches --repeats 3 --steps 20 \
  --json > "$out/bench.json" 2> "$out/bench.txt"
log "bench: rc $? in $(( $(date +%s) - t0 )) s (bench.json)"
# The same UNet step without the matrix unit (the scalar kernels), for the ratio.
timeout 120 env VKSD_MATRIX_UNIT=0 "$bin/vksd" bench --parts unet --sizes ${sizes%%,*} --dtypes fp16 --batches 1 \
  --repeats 3 --json > "$out/bench_scalar.json" 2> "$out/bench_scalar.txt"
log "bench without the matrix unit: rc $? (bench_scalar.json)"

# PyTorch on the same UNet and checkpoint: CUDA fp16 where there is a GPU, else CPU fp32.
ckpt=$(ls "$XDG_CACHE_HOME"/vksd/bench/*.safetensors 2>/dev/null | head -1)
unet='{"in_channels":4,"out_channels":4,"model_channels":320,"channel_mult":[1,2,4,4],"num_res_blocks":2,"attention_levels":[true,true,true,false],"num_heads":8,"context_dim":768,"transformer_depth":1}'
dev=cpu half=
python3 -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null && dev=cuda half=--half
latent=$(( ${sizes%%,*} / 8 ))
if [[ -n $ckpt ]]; then
  for b in ${batches//,/ }; do
    timeout 300 python3 bench/torch_unet_bench.py --ckpt "$ckpt" --unet "$unet" --latent $latent --batch $b --repeats 5 \
      --device $dev $half > "$out/torch_b$b.json" 2>&1
    log "torch $dev batch $b: rc $? $(tail -1 "$out/torch_b$b.json")"
  done
else
  log "torch: no bench checkpoint under $XDG_CACHE_HOME/vksd/bench (the bench did not write one)"
fi
log "done"

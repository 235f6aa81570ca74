#!/usr/bin/env bash
# Installs everything vksd needs from Debian/Ubuntu packages. Idempotent: packages already
# present are skipped, so running it again costs a few seconds.
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build pkg-config
  libvulkan-dev vulkan-tools mesa-vulkan-drivers vulkan-validationlayers glslc spirv-tools
  libglfw3-dev libimgui-dev doctest-dev libstb-dev zlib1g-dev libutf8proc-dev
  xvfb libgif-dev libpng-dev libjpeg62-turbo-dev nettle-dev libcpp-httplib-dev nlohmann-json3-dev python3
  clang libclang-rt-dev  # libFuzzer + ASan/UBSan for tests/fuzz (a short run per harness in ctest)
)
# Python tooling (reference checks, demo-model training) uses Debian's torch and numpy.
if [ "${VKSD_WITH_PYTHON:-0}" = 1 ]; then
  PKGS+=(python3-torch python3-numpy libopenblas0-pthread python3-pil)
fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all packages present"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

#!/usr/bin/env bash
# Builds one libFuzzer harness with clang (ASan + UBSan, every UB fatal) and runs it on its seed
# corpus for SECONDS. Usage: tests/fuzz/run.sh NAME SECONDS [BUILD_DIR] [extra libFuzzer flags]
#   NAME: safetensors | json | prompt | image
# A crash, leak, timeout (10 s per input) or sanitizer report fails the run; libFuzzer writes the
# input as crash-* in BUILD_DIR/NAME/ — turn it into a regression test.
# Longer runs: tests/fuzz/run.sh json 600 build/fuzz -runs=1000000  (see README, Fuzzing)
set -euo pipefail
name=$1 seconds=$2 out=${3:-build/fuzz}
shift $(( $# < 3 ? $# : 3 ))
src=$(cd "$(dirname "$0")/../.." && pwd)
CXX=${FUZZ_CXX:-clang++}
case $name in
  safetensors) files="runtime/model/safetensors.cpp runtime/gpu/half.cpp runtime/io/json.cpp runtime/io/file_check.cpp"; libs="" ;;
  json) files="runtime/io/json.cpp"; libs="" ;;
  prompt) files="runtime/text/prompt.cpp runtime/text/tokenizer.cpp runtime/text/text_clean.cpp runtime/io/json.cpp runtime/io/file_check.cpp"
          libs="-lutf8proc -lz" ;;
  image) files="runtime/io/image_io.cpp runtime/io/jpeg_decode.cpp runtime/io/file_check.cpp"; libs="$(pkg-config --libs libpng) -ljpeg -lz" ;;
  *) echo "run.sh: unknown harness '$name'" >&2; exit 2 ;;
esac
mkdir -p "$out/$name"
out=$(cd "$out" && pwd)
bin="$out/fuzz_$name"
deps="$src/tests/fuzz/fuzz_$name.cpp"
for f in $files; do deps="$deps $src/$f"; done
# Rebuild when a source or header is newer than the binary.
if [ ! -x "$bin" ] || [ -n "$(find $deps "$src/runtime" -newer "$bin" -name '*.[ch]*' 2>/dev/null | head -1)" ]; then
  echo "fuzz: building $bin"
  "$CXX" -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I "$src" -I /usr/include/stb $(pkg-config --cflags libutf8proc libpng 2>/dev/null) -o "$bin" $deps $libs
fi
# The seed corpus is read-only input; new finds go to a scratch corpus beside the binary.
vocab="$src/../shared/clip/bpe_simple_vocab_16e6.txt.gz"
[ -f "$vocab" ] && export VKSD_FUZZ_VOCAB="$vocab"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
cd "$out/$name"
# VKSD_FUZZ_FRESH=1 (the ctest runs): start from the seed corpus alone, so that with a fixed -seed
# and -runs the run is the same every time (a test that fails only on some runs helps nobody).
if [ "${VKSD_FUZZ_FRESH:-0}" = 1 ]; then rm -rf corpus; fi
mkdir -p corpus
exec "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 "$@" \
  corpus "$src/tests/fuzz/corpus/$name"

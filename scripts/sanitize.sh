#!/usr/bin/env bash
# The AddressSanitizer + UndefinedBehaviorSanitizer build (build-asan/, -DVKSD_SANITIZE=ON) of the
# library, the CLI, the server, the viewer and the unit tests, and the tests run in it. Not yet
# called from .ci/run: its CI time and its first reports are still to be measured (README,
# "Sanitizers beyond the fuzzers"). Every ASan/UBSan report and every leak fails the test that
# hit it; reports from inside the Vulkan driver, loader and validation layer (not our code, not
# instrumented) are suppressed by tests/sanitize/lsan.supp, each entry explained there.
#
# Left to the normal build (scripts/test.sh), for CI's 30-minute limit on 2 cores (SANITIZE_SKIP
# below; to be confirmed by measuring): the libFuzzer runs (already
# ASan + UBSan, built by clang), the install test (a third build), and the tests that spend
# their time in lavapipe's shader execution or a double-precision CPU reference rather than in
# our host code (full-size parity, the viewer and its panels, the demo model's prompt test).
set -euo pipefail
cd "$(dirname "$0")/.."
src=$(pwd)
bash scripts/setup.sh
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Release -DVKSD_SANITIZE=ON >/dev/null
ninja -C build-asan
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=0:strict_string_checks=1
export LSAN_OPTIONS=suppressions=$src/tests/sanitize/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
SANITIZE_SKIP='^vksd\.(fuzz\.|install$|full size:|panels?[ :]|viewer|demo model: prompt following)'
cd build-asan
ctest --output-on-failure -j"$(nproc)" --timeout 900 -E "$SANITIZE_SKIP" "$@"

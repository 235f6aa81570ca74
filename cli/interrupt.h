// SIGINT/SIGTERM during `vksd generate`: the first signal asks the run to stop at the next
// sampling step (the pipeline polls Observer::cancelled), so the process unwinds normally — no
// half-written PNG, no temp file, device objects destroyed — and exits with 128 + the signal.
// A second signal kills at once (the default action), for a run stuck outside the step loop.
#pragma once

namespace vksd::cli {

void install_interrupt_handlers();
// The signal received (SIGINT, SIGTERM), 0 while none has come.
int interrupt_signal();
const char* interrupt_signal_name();

}  // namespace vksd::cli

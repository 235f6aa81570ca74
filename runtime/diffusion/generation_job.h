// GenerationJob: one SdPipeline::generate() at a time on a worker thread, watched and steered
// step by step — what the viewer (`vksd view`) and the HTTP server drive.
//
// The job keeps a timeline: a StepRecord (copies of the StepEvent's data, as float) for every
// sampler step, optionally with the VAE decoder's image of the step's x0 prediction. Control is
// pause / resume / single step / cancel between steps; a UI polls version() cheaply and reads
// progress() and the records when it changes.
//
// Threading:
//  * Every member function is thread-safe (one mutex; record_ptr() hands out immutable records
//    without copying).
//  * The SdPipeline belongs to the job thread while a job is Running or Paused: callers must not
//    touch the pipeline (generate, decode_latent, release_all, ...) until the state is Idle,
//    Done, Cancelled or Failed (wait() returns then). The one exception is
//    SdPipeline::check_params, which is read-only.
//  * The job thread is created by the first start() and lives until the GenerationJob is
//    destroyed (one thread for every job: the Vulkan context keeps per-thread command pools).
//  * While Paused the job thread blocks inside Observer::on_step (or, with
//    JobOptions::start_paused, in on_stage("sample") before the first step); resume(), step(),
//    cancel() and the destructor wake it.
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "runtime/gpu/graph.h"
#include "runtime/io/image_io.h"
#include "runtime/diffusion/pipeline.h"
#include "runtime/text/prompt.h"

namespace vksd {

enum class JobState { Idle, Running, Paused, Done, Cancelled, Failed };
// "idle", "running", "paused", "done", "cancelled", "failed".
const char* job_state_name(JobState s);

// One sampler step as kept on the timeline: copies of StepEvent's data (as float), so it outlives
// the step. Latents are [1, channels, height, width].
struct StepRecord {
  int index = 0, count = 0;  // step of the full schedule (img2img starts later than 0)
  double t = 0, sigma = 0;
  int channels = 4, height = 0, width = 0;  // latent geometry
  std::vector<float> x, denoised, eps, eps_cond, eps_uncond;  // eps_uncond empty without guidance
  std::vector<float> x_in;  // what the UNet saw (StepEvent::x_in): predicted_x0(x_in, any eps, sigma)
  double x_signal = 1, x_noise = 0, step_ms = 0;
  // The VAE decoder's image of `denoised` (tensor_to_image of SdPipeline::decode_latent), on the
  // steps JobOptions::vae_preview_every asks for.
  std::optional<Image> vae_preview;
  double vae_preview_ms = 0;  // time that decode took (not part of step_ms)
  // With GenerateParams::attention_maps (host memory bounded: JobOptions::attention_layer_budget):
  //   attention         every cross-attention layer's map (StepEvent::attention), in graph order;
  //                     only on the newest steps: empty on steps that fell out of the budget;
  //   attention_levels  on every step: per UNet level with cross-attention, the mean of that
  //                     level's layers (block "level N", `layers` = how many), shallowest first.
  std::vector<AttentionMap> attention, attention_levels;
  size_t bytes() const;       // host memory this record holds
};

// A run's text conditioning (Observer::on_text), kept by the job: the tokens of the prompt and the
// negative prompt as the text encoder saw them and its output, emphasis applied.
struct TextRecord {
  std::string prompt_text, negative_text;  // GenerateParams::prompt, ::negative_prompt
  WeightedPrompt prompt, negative;         // negative: chunk_count 0 without guidance
  std::vector<float> cond, uncond;         // [chunks * 77, width]; uncond empty without guidance
  int chunks = 0, width = 0, clip_skip = 1;
  double text_ms = 0;
  size_t bytes() const;
};

// The UNet's per-dispatch GPU times of one step (GenerateParams::profile).
struct UNetTimings {
  int record = 0;  // the timeline record (k-th step run) they belong to
  int index = 0;   // its step of the schedule
  std::vector<DispatchTiming> dispatches;  // graph order; empty: the device has no timestamps
  double total_ms() const;                 // sum over the dispatches
};

struct JobOptions {
  int stop_at = -1;           // >= 0: pause automatically after the step with this schedule index
  bool start_paused = false;  // pause before the first step (the user then presses Step or Resume)
  // > 0: decode x0 with the VAE after every N-th step (steps run k = 1, 2, ...: when k % N == 0)
  // and after the last step, on the job thread, so the UI never waits for it. With
  // PipelineOptions::lowvram the VAE then stays resident beside the UNet during sampling.
  int vae_preview_every = 0;
  // Attention maps (GenerateParams::attention_maps) are large: SD 1.5 at 512 x 512 has 16
  // cross-attention layers on 64², 32², 16² and 8² grids x 77 tokens, 8.3 MB of floats per step;
  // keeping them for every step of a long run would take gigabytes. So the timeline keeps
  //   * per-level means (StepRecord::attention_levels) for every step: 1.7 MB per step at SD 1.5
  //     512² (26 KB for the 64 x 64 demo model), like the step's latents a fixed cost per step;
  //   * per-layer maps (StepRecord::attention) for the newest steps while their total stays
  //     within this budget (the newest step always keeps them): with 64 MiB, the newest 7 steps
  //     of SD 1.5 at 512², every step of the demo model (75 KB per step). An older record on the
  //     timeline is then replaced by a copy without them (record_ptr(k) hands out the new copy;
  //     copies already handed out stay as they were).
  // timeline_bytes() counts both.
  size_t attention_layer_budget = size_t(64) << 20;
};

struct JobProgress {
  JobState state = JobState::Idle;
  std::string stage;           // the last Observer::on_stage of the job ("" before the first)
  int steps_done = 0;          // records on the timeline
  int steps_total = 0;         // steps this job runs (img2img: fewer than the schedule's)
  double it_per_s = 0;         // from the recorded steps' step_ms (0 before the first step)
  double eta_s = 0;            // remaining steps (and VAE previews) at that rate; 0 when finished
  std::string error;           // Failed: what went wrong
  std::string notice;          // the job's last Observer::on_notice ("" when none)
};

class GenerationJob {
 public:
  explicit GenerationJob(SdPipeline& pipe);
  ~GenerationJob();  // cancels a running or paused job and joins the thread
  GenerationJob(const GenerationJob&) = delete;
  GenerationJob& operator=(const GenerationJob&) = delete;

  // Starts generate(p) on the job thread. p is checked first, on the caller's thread
  // (SdPipeline::check_params: an Error naming the bad parameter, and nothing changes); an Error
  // too while a job is Running or Paused. Clears the timeline and the previous result; the
  // state is Running (or, with start_paused, soon Paused) when start() returns.
  void start(const GenerateParams& p, const JobOptions& o = {});
  // Pause after the current step (no effect unless Running).
  void pause();
  // Continue after a pause (no effect unless Paused). The state is Running when it returns.
  void resume();
  // When Paused: run exactly one more step, then pause again (the state is Running when it
  // returns, Paused after that step). When Running: the same as pause().
  void step();
  // Stops between steps (or stages); the state becomes Cancelled and the pipeline stays usable.
  // No effect unless Running or Paused; a cancel that arrives during the final VAE decode comes
  // too late (the job ends Done). Does not wait: call wait() for that.
  void cancel();

  // Until the job has ended (Done, Cancelled or Failed), or at once when Idle. Paused is not an
  // end: wait() on a paused job blocks until someone resumes or cancels it.
  void wait();
  // Until state() == s (true), the time runs out, or the job ends in another state (false).
  bool wait_for(JobState s, double timeout_s);

  JobState state() const;
  JobProgress progress() const;
  // Increments on every new step record, stage or state change (UIs poll it cheaply).
  uint64_t version() const;

  // The timeline: records 0 .. steps_recorded() - 1 in the order the steps ran (record k is the
  // k-th step run; StepRecord::index is its step of the schedule).
  int steps_recorded() const;
  StepRecord record(int k) const;                             // a copy; Error when out of range
  std::shared_ptr<const StepRecord> record_ptr(int k) const;  // no copy (records never change)
  std::optional<GenerateResult> result() const;               // when Done
  GenerateParams params() const;                              // of the current / last job
  JobOptions options() const;                                 // of the current / last job
  size_t timeline_bytes() const;  // host memory the timeline holds (for the UI's budget line)
  // The current / last run's text conditioning; null until its text is encoded (cleared by
  // start()). Immutable: no copy.
  std::shared_ptr<const TextRecord> text() const;
  // With GenerateParams::profile: the UNet's GPU times of the newest step (copied once per
  // step); null before the first step or without profile (cleared by start()).
  std::shared_ptr<const UNetTimings> last_unet_timings() const;
  // Every timed step of the current / last run, in the order they ran (the same immutable
  // records; about 40 bytes per UNet dispatch and step, kept only with profile).
  std::vector<std::shared_ptr<const UNetTimings>> unet_timings() const;
  SdPipeline& pipeline() { return pipe_; }  // see Threading above

  // Runs `task` on the job thread, the pipeline's owner, between jobs (the viewer's forward-
  // process panel encodes and decodes through the VAE this way while the UI thread draws).
  // Tasks and jobs run in the order they were asked for. An Error while a job is Running or
  // Paused. The future carries the task's exception, if any.
  std::future<void> submit(std::function<void(SdPipeline&)> task);

 private:
  class Watcher;
  void thread_main();
  void run_job();
  void set_state_locked(JobState s);
  void bump_locked();
  // Called by the Watcher on the job thread.
  void on_stage(const std::string& stage);
  void on_step(const StepEvent& e);
  void on_text(const TextEvent& e);
  bool cancel_requested() const;
  // Blocks while paused (lock held); returns when resumed, stepped or cancelled.
  void pause_here_locked(std::unique_lock<std::mutex>& lk);

  SdPipeline& pipe_;
  mutable std::mutex mu_;
  std::condition_variable cv_;        // job thread: new job, resume/step/cancel, shutdown
  mutable std::condition_variable state_cv_;  // waiters: state changes
  std::thread thread_;
  bool shutdown_ = false;
  bool job_pending_ = false;
  std::deque<std::packaged_task<void()>> tasks_;

  // The job (guarded by mu_).
  GenerateParams params_;
  JobOptions opts_;
  JobState state_ = JobState::Idle;
  uint64_t version_ = 0;
  std::string stage_, error_, notice_;
  std::vector<std::shared_ptr<const StepRecord>> timeline_;
  size_t timeline_bytes_ = 0;
  size_t attention_layer_bytes_ = 0;  // StepRecord::attention on the timeline (the budget's share)
  int steps_total_ = 0;
  bool pause_requested_ = false, step_once_ = false, cancel_requested_ = false;
  std::optional<GenerateResult> result_;
  std::shared_ptr<const TextRecord> text_;
  std::vector<std::shared_ptr<const UNetTimings>> unet_timings_;
};

}  // namespace vksd

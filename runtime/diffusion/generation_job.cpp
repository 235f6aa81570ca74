#include "runtime/diffusion/generation_job.h"

#include <algorithm>
#include <chrono>

#include "runtime/error.h"
#include "runtime/diffusion/samplers.h"

namespace vksd {

const char* job_state_name(JobState s) {
  switch (s) {
    case JobState::Idle: return "idle";
    case JobState::Running: return "running";
    case JobState::Paused: return "paused";
    case JobState::Done: return "done";
    case JobState::Cancelled: return "cancelled";
    case JobState::Failed: return "failed";
  }
  return "?";
}

static bool active(JobState s) { return s == JobState::Running || s == JobState::Paused; }

size_t StepRecord::bytes() const {
  size_t n = sizeof(StepRecord);
  for (const auto* v : {&x, &denoised, &eps, &eps_cond, &eps_uncond, &x_in}) n += v->capacity() * sizeof(float);
  if (vae_preview) n += vae_preview->pixels.capacity();
  for (const auto* maps : {&attention, &attention_levels})
    for (const auto& m : *maps) n += m.bytes();
  return n;
}

static size_t maps_bytes(const std::vector<AttentionMap>& maps) {
  size_t n = 0;
  for (const auto& m : maps) n += m.bytes();
  return n;
}

// Per UNet level, the mean of its layers' maps (StepRecord::attention_levels), shallowest first.
static std::vector<AttentionMap> attention_level_means(const std::vector<AttentionMap>& layers) {
  std::vector<AttentionMap> r;
  for (const auto& m : layers) {
    AttentionMap* mean = nullptr;
    for (auto& x : r)
      if (x.level == m.level && x.height == m.height && x.width == m.width && x.tokens == m.tokens) mean = &x;
    if (!mean) {
      AttentionMap x;
      x.block = "level " + std::to_string(m.level);
      x.level = m.level, x.height = m.height, x.width = m.width, x.tokens = m.tokens;
      x.layers = 0;
      x.probs.assign(m.probs.size(), 0.f);
      r.push_back(std::move(x));
      mean = &r.back();
    }
    for (size_t i = 0; i < m.probs.size() && i < mean->probs.size(); ++i) mean->probs[i] += m.probs[i];
    mean->layers += 1;
  }
  for (auto& x : r)
    for (float& v : x.probs) v /= (float)x.layers;
  std::stable_sort(r.begin(), r.end(), [](const AttentionMap& a, const AttentionMap& b) { return a.level < b.level; });
  return r;
}

size_t TextRecord::bytes() const {
  return sizeof(TextRecord) + prompt_text.capacity() + negative_text.capacity() +
         (prompt.ids.capacity() + negative.ids.capacity()) * sizeof(int32_t) +
         (prompt.weights.capacity() + negative.weights.capacity() + cond.capacity() + uncond.capacity()) * sizeof(float);
}

double UNetTimings::total_ms() const {
  double ms = 0;
  for (const auto& d : dispatches) ms += d.ms;
  return ms;
}

static const char* const kCancelled = "generation cancelled";  // as SdPipeline::generate says it

// The Observer handed to generate(): forwards to the job (on the job thread).
class GenerationJob::Watcher : public Observer {
 public:
  explicit Watcher(GenerationJob& job) : job_(job) {}
  void on_stage(const std::string& stage) override { job_.on_stage(stage); }
  void on_step(const StepEvent& e) override { job_.on_step(e); }
  void on_text(const TextEvent& e) override { job_.on_text(e); }
  void on_notice(const std::string& text) override {
    std::lock_guard<std::mutex> lk(job_.mu_);
    job_.notice_ = text;
    job_.bump_locked();
  }
  bool cancelled() override { return job_.cancel_requested(); }

 private:
  GenerationJob& job_;
};

GenerationJob::GenerationJob(SdPipeline& pipe) : pipe_(pipe) {}

GenerationJob::~GenerationJob() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    shutdown_ = true;
    if (active(state_)) cancel_requested_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void GenerationJob::bump_locked() { ++version_; }

void GenerationJob::set_state_locked(JobState s) {
  state_ = s;
  bump_locked();
  state_cv_.notify_all();
}

// ---- control (any thread) -------------------------------------------------------------------

void GenerationJob::start(const GenerateParams& p, const JobOptions& o) {
  std::lock_guard<std::mutex> lk(mu_);
  if (active(state_))
    fail(std::string("a generation is already ") + job_state_name(state_) + "; cancel it or wait for it first");
  pipe_.check_params(p);  // read-only; throws before anything changes
  // Steps this job will run (the pipeline's own rule: img2img starts at steps - steps * strength).
  int total = pipe_.make_sampler(p)->steps();
  if (p.init_image) total = (int)(total * p.strength);
  if (p.start_latent) total -= p.start_step;
  params_ = p;
  opts_ = o;
  timeline_.clear();
  timeline_bytes_ = 0;
  attention_layer_bytes_ = 0;
  steps_total_ = total;
  stage_.clear();
  error_.clear();
  notice_.clear();
  result_.reset();
  text_.reset();
  unet_timings_.clear();
  pause_requested_ = step_once_ = cancel_requested_ = false;
  job_pending_ = true;
  set_state_locked(JobState::Running);
  if (!thread_.joinable()) thread_ = std::thread(&GenerationJob::thread_main, this);
  cv_.notify_all();
}

void GenerationJob::pause() {
  std::lock_guard<std::mutex> lk(mu_);
  if (state_ == JobState::Running) pause_requested_ = true;
}

void GenerationJob::resume() {
  std::lock_guard<std::mutex> lk(mu_);
  if (state_ == JobState::Running) {
    pause_requested_ = step_once_ = false;  // a pause asked for but not reached yet is withdrawn
  } else if (state_ == JobState::Paused) {
    pause_requested_ = step_once_ = false;
    set_state_locked(JobState::Running);
    cv_.notify_all();
  }
}

void GenerationJob::step() {
  std::lock_guard<std::mutex> lk(mu_);
  if (state_ == JobState::Running) {
    pause_requested_ = true;
  } else if (state_ == JobState::Paused) {
    pause_requested_ = false;
    step_once_ = true;
    set_state_locked(JobState::Running);
    cv_.notify_all();
  }
}

void GenerationJob::cancel() {
  std::lock_guard<std::mutex> lk(mu_);
  if (!active(state_)) return;
  cancel_requested_ = true;
  cv_.notify_all();
}

void GenerationJob::wait() {
  std::unique_lock<std::mutex> lk(mu_);
  state_cv_.wait(lk, [&] { return !active(state_); });
}

bool GenerationJob::wait_for(JobState s, double timeout_s) {
  std::unique_lock<std::mutex> lk(mu_);
  const auto d = std::chrono::duration<double>(timeout_s > 0 ? std::min(timeout_s, 1e7) : 0.0);  // NaN: 0
  state_cv_.wait_for(lk, std::chrono::duration_cast<std::chrono::steady_clock::duration>(d),
                     [&] { return state_ == s || !active(state_); });
  return state_ == s;
}

// ---- queries (any thread) -------------------------------------------------------------------

JobState GenerationJob::state() const {
  std::lock_guard<std::mutex> lk(mu_);
  return state_;
}

uint64_t GenerationJob::version() const {
  std::lock_guard<std::mutex> lk(mu_);
  return version_;
}

JobProgress GenerationJob::progress() const {
  std::lock_guard<std::mutex> lk(mu_);
  JobProgress pr;
  pr.state = state_;
  pr.stage = stage_;
  pr.error = error_;
  pr.notice = notice_;
  pr.steps_done = (int)timeline_.size();
  pr.steps_total = steps_total_;
  // Rate: the mean step time of the last (up to) 8 steps, so that it follows the current speed
  // (the first step of a run can be slower).
  const size_t n = timeline_.size(), window = std::min<size_t>(n, 8);
  double ms = 0;
  for (size_t i = n - window; i < n; ++i) ms += timeline_[i]->step_ms;
  if (window > 0 && ms > 0) {
    const double step_ms = ms / (double)window;
    pr.it_per_s = 1000.0 / step_ms;
    if (active(state_)) {
      const int remaining = std::max(0, steps_total_ - (int)n);
      double eta_ms = remaining * step_ms;
      // VAE previews still to come, at the time the ones so far took.
      const int every = opts_.vae_preview_every;
      double preview_ms = 0;
      int previews = 0;
      for (const auto& r : timeline_)
        if (r->vae_preview) preview_ms += r->vae_preview_ms, ++previews;
      if (every > 0 && previews > 0) {
        int todo = 0;
        for (int k = (int)n + 1; k <= steps_total_; ++k) todo += (k % every == 0 || k == steps_total_) ? 1 : 0;
        eta_ms += todo * preview_ms / previews;
      }
      pr.eta_s = eta_ms / 1000.0;
    }
  }
  return pr;
}

int GenerationJob::steps_recorded() const {
  std::lock_guard<std::mutex> lk(mu_);
  return (int)timeline_.size();
}

std::shared_ptr<const StepRecord> GenerationJob::record_ptr(int k) const {
  std::lock_guard<std::mutex> lk(mu_);
  if (k < 0 || k >= (int)timeline_.size()) return nullptr;
  return timeline_[(size_t)k];
}

StepRecord GenerationJob::record(int k) const {
  auto r = record_ptr(k);
  if (!r) fail("no step record " + std::to_string(k) + " (the timeline holds " + std::to_string(steps_recorded()) + ")");
  return *r;
}

std::optional<GenerateResult> GenerationJob::result() const {
  std::lock_guard<std::mutex> lk(mu_);
  return result_;
}

GenerateParams GenerationJob::params() const {
  std::lock_guard<std::mutex> lk(mu_);
  return params_;
}

JobOptions GenerationJob::options() const {
  std::lock_guard<std::mutex> lk(mu_);
  return opts_;
}

size_t GenerationJob::timeline_bytes() const {
  std::lock_guard<std::mutex> lk(mu_);
  return timeline_bytes_;
}

std::shared_ptr<const TextRecord> GenerationJob::text() const {
  std::lock_guard<std::mutex> lk(mu_);
  return text_;
}

std::shared_ptr<const UNetTimings> GenerationJob::last_unet_timings() const {
  std::lock_guard<std::mutex> lk(mu_);
  return unet_timings_.empty() ? nullptr : unet_timings_.back();
}

std::vector<std::shared_ptr<const UNetTimings>> GenerationJob::unet_timings() const {
  std::lock_guard<std::mutex> lk(mu_);
  return unet_timings_;
}

// ---- the job thread -------------------------------------------------------------------------

std::future<void> GenerationJob::submit(std::function<void(SdPipeline&)> task) {
  std::lock_guard<std::mutex> lk(mu_);
  if (active(state_)) fail(std::string("the pipeline is busy: a generation is ") + job_state_name(state_));
  if (shutdown_) fail("the generation job is shutting down");
  std::packaged_task<void()> pt([this, task = std::move(task)] { task(pipe_); });
  auto fut = pt.get_future();
  tasks_.push_back(std::move(pt));
  if (!thread_.joinable()) thread_ = std::thread(&GenerationJob::thread_main, this);
  cv_.notify_all();
  return fut;
}

void GenerationJob::thread_main() {
  for (;;) {
    std::packaged_task<void()> task;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return job_pending_ || shutdown_ || !tasks_.empty(); });
      if (!tasks_.empty()) {
        task = std::move(tasks_.front());
        tasks_.pop_front();
      } else {
        // A job started just before destruction still runs (cancelled at its first stage), so
        // that it ends in a proper state.
        if (!job_pending_) return;
        job_pending_ = false;
      }
    }
    if (task.valid()) task();  // exceptions go to the task's future
    else run_job();
  }
}

void GenerationJob::run_job() {
  GenerateParams p;
  {
    std::lock_guard<std::mutex> lk(mu_);
    p = params_;
  }
  Watcher w(*this);
  std::optional<GenerateResult> res;
  std::string error;
  try {
    res = pipe_.generate(p, &w);
  } catch (const std::exception& e) {
    error = e.what();
    if (error.empty()) error = "generation failed";
  } catch (...) {
    error = "generation failed (unknown exception)";
  }
  std::lock_guard<std::mutex> lk(mu_);
  if (res) {
    result_ = std::move(res);
    set_state_locked(JobState::Done);
  } else if (cancel_requested_) {
    set_state_locked(JobState::Cancelled);
  } else {
    error_ = error;
    set_state_locked(JobState::Failed);
  }
}

bool GenerationJob::cancel_requested() const {
  std::lock_guard<std::mutex> lk(mu_);
  return cancel_requested_;
}

void GenerationJob::pause_here_locked(std::unique_lock<std::mutex>& lk) {
  cv_.wait(lk, [&] { return state_ != JobState::Paused || cancel_requested_; });
}

void GenerationJob::on_stage(const std::string& stage) {
  std::unique_lock<std::mutex> lk(mu_);
  if (cancel_requested_) fail(kCancelled);  // between stages: no need to wait for a step
  stage_ = stage;
  bump_locked();
  // start_paused: hold before the first step, with the networks loaded and the noise drawn.
  if (stage == "sample" && opts_.start_paused) {
    if (!pause_requested_ && !step_once_) {
      set_state_locked(JobState::Paused);
      pause_here_locked(lk);
      if (cancel_requested_) fail(kCancelled);
    }
  }
}

void GenerationJob::on_text(const TextEvent& e) {
  // Copied outside the lock (the event's pointers live only during this call).
  auto rec = std::make_shared<TextRecord>();
  if (e.prompt) rec->prompt = *e.prompt;
  if (e.negative) rec->negative = *e.negative;
  if (e.cond) rec->cond = *e.cond;
  if (e.uncond) rec->uncond = *e.uncond;
  rec->chunks = e.chunks, rec->width = e.width, rec->clip_skip = e.clip_skip, rec->text_ms = e.text_ms;
  std::lock_guard<std::mutex> lk(mu_);
  rec->prompt_text = params_.prompt, rec->negative_text = params_.negative_prompt;
  text_ = std::move(rec);
  bump_locked();
}

void GenerationJob::on_step(const StepEvent& e) {
  // Copy the step (StepEvent's pointers live only during this call), outside the lock.
  auto rec = std::make_shared<StepRecord>();
  rec->index = e.index, rec->count = e.count;
  rec->t = e.t, rec->sigma = e.sigma;
  rec->channels = e.channels, rec->height = e.height, rec->width = e.width;
  rec->x_signal = e.x_signal, rec->x_noise = e.x_noise, rec->step_ms = e.step_ms;
  auto to_float = [](const auto* v, std::vector<float>& out) {
    if (v) out.assign(v->begin(), v->end());
  };
  to_float(e.x, rec->x);
  to_float(e.denoised, rec->denoised);
  to_float(e.eps, rec->eps);
  to_float(e.eps_cond, rec->eps_cond);
  to_float(e.eps_uncond, rec->eps_uncond);
  to_float(e.x_in, rec->x_in);
  if (e.attention) {
    rec->attention = *e.attention;
    rec->attention_levels = attention_level_means(rec->attention);
  }

  int every = 0, ordinal = 0;
  {
    std::lock_guard<std::mutex> lk(mu_);
    every = opts_.vae_preview_every;
    ordinal = (int)timeline_.size() + 1;  // this is the ordinal-th step the job runs
  }
  const bool last = e.index + 1 == e.count;
  if (every > 0 && (ordinal % every == 0 || last) && !rec->denoised.empty()) {
    // On the job thread, between steps: the pipeline is ours. (Not counted in step_ms.)
    const auto t0 = std::chrono::steady_clock::now();
    const auto& vc = pipe_.config().vae;
    const auto pixels = pipe_.decode_latent(rec->denoised, e.height, e.width);
    const int f = vc.downsample_factor();
    rec->vae_preview = tensor_to_image(pixels.data(), vc.out_channels, e.height * f, e.width * f);
    rec->vae_preview_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }

  // The attention-map budget (JobOptions::attention_layer_budget): the oldest records with
  // per-layer maps are replaced by copies without them until the newest fits. Only this thread
  // changes the timeline while a job runs, so the copies are made outside the lock.
  std::vector<std::pair<size_t, std::shared_ptr<const StepRecord>>> slimmed;
  if (!rec->attention.empty()) {
    std::vector<std::pair<size_t, std::shared_ptr<const StepRecord>>> old;
    {
      std::lock_guard<std::mutex> lk(mu_);
      size_t total = attention_layer_bytes_ + maps_bytes(rec->attention);
      for (size_t k = 0; k < timeline_.size() && total > opts_.attention_layer_budget; ++k)
        if (!timeline_[k]->attention.empty()) {
          total -= maps_bytes(timeline_[k]->attention);
          old.emplace_back(k, timeline_[k]);
        }
    }
    for (auto& [k, r] : old) {
      auto slim = std::make_shared<StepRecord>(*r);
      slim->attention.clear();
      slim->attention.shrink_to_fit();
      slimmed.emplace_back(k, std::move(slim));
    }
  }

  std::shared_ptr<UNetTimings> timings;
  if (e.unet_timings) {
    timings = std::make_shared<UNetTimings>();
    timings->index = e.index;
    timings->dispatches = *e.unet_timings;
  }

  std::unique_lock<std::mutex> lk(mu_);
  if (timings) {
    timings->record = (int)timeline_.size();
    unet_timings_.push_back(std::move(timings));
  }
  if (timeline_.empty()) steps_total_ = e.count - e.index;  // what actually runs
  for (auto& [k, slim] : slimmed) {
    attention_layer_bytes_ -= maps_bytes(timeline_[k]->attention);
    timeline_bytes_ = timeline_bytes_ - timeline_[k]->bytes() + slim->bytes();
    timeline_[k] = std::move(slim);
  }
  attention_layer_bytes_ += maps_bytes(rec->attention);
  timeline_bytes_ += rec->bytes();
  timeline_.push_back(std::move(rec));
  bump_locked();
  const bool stop = pause_requested_ || step_once_ || (opts_.stop_at >= 0 && e.index == opts_.stop_at);
  if (stop && !cancel_requested_) {
    pause_requested_ = step_once_ = false;
    set_state_locked(JobState::Paused);
    pause_here_locked(lk);
  }
  // Cancellation: generate() polls Watcher::cancelled() right after this returns.
}

}  // namespace vksd

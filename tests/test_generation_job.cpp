// GenerationJob (runtime/diffusion/generation_job.h) on the embedded demo model, 64x64, 6 Euler a steps with
// guidance: a job reproduces SdPipeline::generate exactly (image and every step's latents);
// stop_at / step / resume / start_paused / cancel leave the documented timelines; bad parameters
// are refused on the caller's thread; VAE previews are the decoder's images of x0. Every wait
// has a timeout, so a broken job fails the test instead of hanging it.
#include <doctest/doctest.h>

#include <memory>

#include "runtime/model/demo_model.h"
#include "runtime/error.h"
#include "runtime/diffusion/generation_job.h"
#include "runtime/io/image_io.h"
#include "runtime/diffusion/pipeline.h"
#include "tests/test_util.h"

using namespace vksd;

namespace {

constexpr double kTimeout = 300;  // seconds; a 6-step 64x64 job takes well under 10 s on lavapipe

using test::demo_pipeline;

GenerateParams demo_params() {
  GenerateParams p;
  p.prompt = "red apple";
  p.negative_prompt = "blurry";
  p.width = p.height = 64;
  p.steps = 6;
  p.cfg_scale = 5;
  p.sampler = SamplerKind::EulerAncestral;  // stochastic: the job must draw the same noise
  p.seed = 42;
  return p;
}

// What a direct generate()'s observer sees, as float.
struct Recorder : Observer {
  std::vector<std::vector<float>> x, denoised;
  std::vector<int> index;
  void on_step(const StepEvent& e) override {
    x.emplace_back(e.x->begin(), e.x->end());
    denoised.emplace_back(e.denoised->begin(), e.denoised->end());
    index.push_back(e.index);
  }
};

struct Reference {
  GenerateResult result;
  Recorder steps;
};

Reference direct_run(SdPipeline& pipe, const GenerateParams& p) {
  Reference r;
  r.result = pipe.generate(p, &r.steps);
  return r;
}

void check_result_equals(const GenerationJob& job, const Reference& ref) {
  auto res = job.result();
  REQUIRE(res.has_value());
  CHECK(res->image.width == ref.result.image.width);
  CHECK(res->image.pixels == ref.result.image.pixels);
  CHECK(res->latent == ref.result.latent);
}

void check_records_equal(const GenerationJob& job, const Reference& ref, int n) {
  REQUIRE(job.steps_recorded() == n);
  for (int k = 0; k < n; ++k) {
    INFO("record " << k);
    auto r = job.record_ptr(k);
    REQUIRE(r);
    CHECK(r->index == ref.steps.index[(size_t)k]);
    CHECK(r->x == ref.steps.x[(size_t)k]);
    CHECK(r->denoised == ref.steps.denoised[(size_t)k]);
  }
}

}  // namespace

TEST_CASE("generation job: a plain run equals SdPipeline::generate (image and every step), progress, timeline") {
  auto pipe = demo_pipeline();
  const GenerateParams p = demo_params();
  const Reference ref = direct_run(*pipe, p);
  REQUIRE(ref.steps.x.size() == 6);

  GenerationJob job(*pipe);
  CHECK(job.state() == JobState::Idle);
  CHECK(job.steps_recorded() == 0);
  CHECK(!job.result());
  const uint64_t v0 = job.version();
  job.start(p);
  REQUIRE(job.wait_for(JobState::Done, kTimeout));
  CHECK(job.version() > v0 + 6);  // at least a state change and six steps
  check_result_equals(job, ref);
  check_records_equal(job, ref, 6);

  const int n = 4 * 8 * 8;  // latent 4 x 8 x 8
  for (int k = 0; k < 6; ++k) {
    const StepRecord r = job.record(k);
    INFO("record " << k);
    CHECK(r.index == k);
    CHECK(r.count == 6);
    CHECK(r.channels == 4);
    CHECK(r.height == 8);
    CHECK(r.width == 8);
    CHECK(r.x.size() == (size_t)n);
    CHECK(r.eps.size() == (size_t)n);
    CHECK(r.eps_cond.size() == (size_t)n);
    CHECK(r.eps_uncond.size() == (size_t)n);  // guidance on
    CHECK(r.step_ms > 0);
    CHECK(!r.vae_preview);
  }
  CHECK_THROWS_AS(job.record(6), Error);
  CHECK(!job.record_ptr(-1));
  CHECK(job.timeline_bytes() >= 6 * 5 * n * sizeof(float));

  const JobProgress pr = job.progress();
  CHECK(pr.state == JobState::Done);
  CHECK(pr.steps_done == 6);
  CHECK(pr.steps_total == 6);
  CHECK(pr.it_per_s > 0);
  CHECK(pr.eta_s == 0);
  CHECK(pr.stage == "decode");
  CHECK(pr.error.empty());
  CHECK(job.params().prompt == p.prompt);
  CHECK(std::string(job_state_name(JobState::Cancelled)) == "cancelled");

  // Without guidance: no eps_uncond; the pipeline is usable again after a job.
  GenerateParams q = p;
  q.cfg_scale = 1;
  q.steps = 2;
  job.start(q);
  REQUIRE(job.wait_for(JobState::Done, kTimeout));
  REQUIRE(job.steps_recorded() == 2);  // the timeline was cleared
  CHECK(job.record(0).eps_uncond.empty());
  CHECK(job.record(0).eps_cond.size() == (size_t)n);
  job.wait();  // returns at once when ended
}

TEST_CASE("generation job: stop_at pauses, step() runs exactly one step, resume() finishes identically") {
  auto pipe = demo_pipeline();
  const GenerateParams p = demo_params();
  const Reference ref = direct_run(*pipe, p);

  GenerationJob job(*pipe);
  JobOptions o;
  o.stop_at = 2;
  job.start(p, o);
  REQUIRE(job.wait_for(JobState::Paused, kTimeout));
  CHECK(job.steps_recorded() == 3);
  CHECK(job.progress().steps_done == 3);
  CHECK(job.progress().stage == "sample");
  CHECK(job.progress().eta_s > 0);
  CHECK(!job.wait_for(JobState::Done, 0.2));  // stays paused

  job.step();
  REQUIRE(job.wait_for(JobState::Paused, kTimeout));
  CHECK(job.steps_recorded() == 4);
  job.pause();  // no effect while paused
  job.step();
  REQUIRE(job.wait_for(JobState::Paused, kTimeout));
  CHECK(job.steps_recorded() == 5);

  job.resume();
  REQUIRE(job.wait_for(JobState::Done, kTimeout));
  check_records_equal(job, ref, 6);
  check_result_equals(job, ref);
}

TEST_CASE("generation job: start_paused holds before the first step, cancel while paused, start again") {
  auto pipe = demo_pipeline();
  const GenerateParams p = demo_params();
  const Reference ref = direct_run(*pipe, p);
  GenerationJob job(*pipe);

  SUBCASE("cancel while paused at step k keeps k + 1 records, then a new job reaches Done") {
    JobOptions o;
    o.stop_at = 3;
    job.start(p, o);
    REQUIRE(job.wait_for(JobState::Paused, kTimeout));
    REQUIRE(job.steps_recorded() == 4);
    job.cancel();
    REQUIRE(job.wait_for(JobState::Cancelled, kTimeout));
    CHECK(job.steps_recorded() == 4);
    check_records_equal(job, ref, 4);
    CHECK(!job.result());
    CHECK(job.progress().error.empty());
    CHECK(job.progress().eta_s == 0);
    job.cancel();  // no effect once ended
    CHECK(job.state() == JobState::Cancelled);

    job.start(p);
    REQUIRE(job.wait_for(JobState::Done, kTimeout));
    check_records_equal(job, ref, 6);
    check_result_equals(job, ref);
  }

  SUBCASE("start_paused: Step runs the first step, Resume the rest") {
    JobOptions o;
    o.start_paused = true;
    job.start(p, o);
    REQUIRE(job.wait_for(JobState::Paused, kTimeout));
    CHECK(job.steps_recorded() == 0);
    CHECK(job.progress().stage == "sample");
    job.step();
    REQUIRE(job.wait_for(JobState::Paused, kTimeout));
    CHECK(job.steps_recorded() == 1);
    job.resume();
    REQUIRE(job.wait_for(JobState::Done, kTimeout));
    check_records_equal(job, ref, 6);
    check_result_equals(job, ref);
  }

  SUBCASE("start_paused then cancel: no step runs") {
    JobOptions o;
    o.start_paused = true;
    job.start(p, o);
    REQUIRE(job.wait_for(JobState::Paused, kTimeout));
    job.cancel();
    REQUIRE(job.wait_for(JobState::Cancelled, kTimeout));
    CHECK(job.steps_recorded() == 0);
    // The pipeline stays usable directly too.
    const GenerateResult again = pipe->generate(p);
    CHECK(again.image.pixels == ref.result.image.pixels);
  }

  SUBCASE("destroying a paused job cancels it and joins its thread") {
    {
      GenerationJob other(*pipe);
      JobOptions o;
      o.stop_at = 1;
      other.start(p, o);
      REQUIRE(other.wait_for(JobState::Paused, kTimeout));
    }
    job.start(p);
    REQUIRE(job.wait_for(JobState::Done, kTimeout));
    check_result_equals(job, ref);
  }
}

TEST_CASE("generation job: invalid parameters throw on the caller's thread and change nothing, one job at a time") {
  auto pipe = demo_pipeline();
  GenerateParams p = demo_params();
  GenerationJob job(*pipe);

  GenerateParams bad = p;
  bad.width = 65;
  CHECK_THROWS_WITH_AS(job.start(bad), doctest::Contains("multiples of"), Error);
  CHECK(job.state() == JobState::Idle);
  CHECK(job.version() == 0);
  bad = p;
  bad.steps = 0;
  CHECK_THROWS_AS(job.start(bad), Error);
  CHECK(job.state() == JobState::Idle);

  p.steps = 3;
  JobOptions o;
  o.stop_at = 0;
  job.start(p, o);
  REQUIRE(job.wait_for(JobState::Paused, kTimeout));
  CHECK_THROWS_WITH_AS(job.start(p), doctest::Contains("already paused"), Error);
  CHECK(job.state() == JobState::Paused);
  CHECK(job.steps_recorded() == 1);
  job.resume();
  REQUIRE(job.wait_for(JobState::Done, kTimeout));

  bad.width = 65;
  bad.steps = 3;
  CHECK_THROWS_AS(job.start(bad), Error);
  CHECK(job.state() == JobState::Done);  // the previous job's state, result and timeline stay
  CHECK(job.steps_recorded() == 3);
  CHECK(job.result().has_value());
  CHECK(job.params().width == 64);
}

TEST_CASE("generation job: vae_preview_every decodes x0 on the requested steps and the last") {
  auto pipe = demo_pipeline();
  const GenerateParams p = demo_params();
  const Reference ref = direct_run(*pipe, p);
  GenerationJob job(*pipe);

  for (int every : {2, 4}) {
    INFO("vae_preview_every " << every);
    JobOptions o;
    o.vae_preview_every = every;
    job.start(p, o);
    REQUIRE(job.wait_for(JobState::Done, kTimeout));
    REQUIRE(job.steps_recorded() == 6);
    check_result_equals(job, ref);  // previews do not disturb the run
    check_records_equal(job, ref, 6);
    // Expectations computed here, after the job: the pipeline is the caller's again.
    for (int k = 0; k < 6; ++k) {
      INFO("record " << k);
      const StepRecord r = job.record(k);
      const bool want = (k + 1) % every == 0 || k == 5;
      REQUIRE(r.vae_preview.has_value() == want);
      if (!want) continue;
      const auto pixels = pipe->decode_latent(r.denoised, r.height, r.width);
      const Image expect = tensor_to_image(pixels.data(), 3, 64, 64);
      CHECK(r.vae_preview->width == 64);
      CHECK(r.vae_preview->height == 64);
      CHECK(r.vae_preview->channels == 3);
      CHECK(r.vae_preview->pixels == expect.pixels);
    }
  }
}

// What the guidance and forward-process panels rely on: x0 from any noise prediction
// (predicted_x0 on the UNet's input), resuming a run at step k from its latent, and tasks on the
// job thread.
#include <doctest/doctest.h>

#include <cmath>

#include "runtime/model/demo_model.h"
#include "runtime/error.h"
#include "runtime/diffusion/generation_job.h"
#include "runtime/diffusion/pipeline.h"
#include "tests/test_util.h"

using namespace vksd;

namespace {

constexpr double kTimeout = 300;

using test::demo_pipeline;

GenerateParams params(SamplerKind s) {
  GenerateParams p;
  p.prompt = "red apple";
  p.width = p.height = 64;
  p.steps = 6;
  p.cfg_scale = 5;
  p.sampler = s;
  p.seed = 11;
  return p;
}

}  // namespace

TEST_CASE("predicted_x0 of the guided eps on the UNet's input is the step's x0 prediction (euler, ddim, dpm++2m)") {
  auto pipe = demo_pipeline();
  GenerationJob job(*pipe);
  for (SamplerKind s : {SamplerKind::Euler, SamplerKind::DDIM, SamplerKind::DpmPP2M}) {
    job.start(params(s));
    REQUIRE(job.wait_for(JobState::Done, kTimeout));
    for (int k = 0; k < job.steps_recorded(); ++k) {
      auto r = job.record_ptr(k);
      REQUIRE(r->x_in.size() == r->eps.size());
      auto x0 = predicted_x0(r->x_in, r->eps, r->sigma);
      // x_in is float: the difference is float rounding scaled by sqrt(1 + sigma^2).
      CHECK(test::rel_l2(x0, r->denoised) < 1e-5 * std::sqrt(1 + r->sigma * r->sigma));
      // The prompt's own and the negative prompt's predictions differ from the guided one.
      auto x0c = predicted_x0(r->x_in, r->eps_cond, r->sigma), x0u = predicted_x0(r->x_in, r->eps_uncond, r->sigma);
      CHECK(test::rel_l2(x0c, x0u) > 1e-3);
    }
  }
  CHECK_THROWS_AS(predicted_x0({1, 2}, {1}, 1.0), Error);
}

TEST_CASE("a run resumed at step k from its latent finishes exactly as the full run (deterministic sampler)") {
  auto pipe = demo_pipeline();
  GenerationJob job(*pipe);
  GenerateParams p = params(SamplerKind::Euler);
  job.start(p);
  REQUIRE(job.wait_for(JobState::Done, kTimeout));
  const auto full = *job.result();
  std::vector<std::shared_ptr<const StepRecord>> recs;
  for (int k = 0; k < job.steps_recorded(); ++k) recs.push_back(job.record_ptr(k));

  GenerateParams r = p;
  r.start_latent = recs[2]->x;  // after step index 2: resume at 3
  r.start_step = 3;
  job.start(r);
  REQUIRE(job.wait_for(JobState::Done, kTimeout));
  REQUIRE(job.steps_recorded() == 3);
  CHECK(job.record_ptr(0)->index == 3);
  CHECK(job.progress().steps_total == 3);
  // x is double inside the sampler and float on the timeline: equal to float rounding.
  CHECK(test::rel_l2(job.record_ptr(2)->x, recs[5]->x) < 1e-6);
  const auto res = *job.result();
  int differ = 0;
  for (size_t i = 0; i < res.image.pixels.size(); ++i) differ += std::abs((int)res.image.pixels[i] - (int)full.image.pixels[i]) > 1;
  CHECK(differ == 0);

  // Bad resumes are named.
  GenerateParams bad = r;
  bad.start_step = 6;
  CHECK_THROWS_WITH_AS(job.start(bad), doctest::Contains("start step"), Error);
  bad = r;
  bad.start_latent->resize(10);
  CHECK_THROWS_WITH_AS(job.start(bad), doctest::Contains("start latent"), Error);
}

TEST_CASE("tasks run on the job thread between jobs, and are refused during one") {
  auto pipe = demo_pipeline();
  GenerationJob job(*pipe);
  std::vector<float> latent(4 * 8 * 8, 0.1f), pixels;
  std::thread::id where;
  job.submit([&](SdPipeline& pp) {
       where = std::this_thread::get_id();
       pixels = pp.decode_latent(latent, 8, 8);
     })
      .get();
  CHECK(where != std::this_thread::get_id());
  CHECK(pixels.size() == 3u * 64 * 64);
  CHECK(pixels == pipe->decode_latent(latent, 8, 8));  // the job is idle: the test thread may use it
  // An exception travels through the future.
  auto f = job.submit([](SdPipeline&) { fail("task failed on purpose"); });
  CHECK_THROWS_WITH_AS(f.get(), "task failed on purpose", Error);
  // During a run the pipeline is the job's.
  JobOptions o;
  o.start_paused = true;
  job.start(params(SamplerKind::Euler), o);
  CHECK_THROWS_WITH_AS(job.submit([](SdPipeline&) {}), doctest::Contains("busy"), Error);
  job.cancel();
  job.wait();
  CHECK(test::validation_messages_so_far() == 0);
}

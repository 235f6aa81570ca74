// The "tokens" and "hood" teaching panels as a student sees them (Xvfb screenshots of
// `vksd view --panel ...` on the demo model): the numbers in the layout file are the runtime's.
#include <doctest/doctest.h>

#include <cmath>

#include "runtime/model/demo_model.h"
#include "runtime/diffusion/pipeline.h"
#include "runtime/text/prompt.h"
#include "runtime/text/tokenizer.h"
#include "tests/viewer_harness.h"

using namespace vksd::test;

namespace {

const Json& panel(const Shot& s, const char* name) { return at(at(s.layout, "panels"), name); }

const std::string kPrompt = "red apple, (smiling:1.3)";
const std::string kRun = "-p " + shell_quote(kPrompt) + " --steps 6 --seed 7 --sampler euler --cfg-scale 5 --window 1600x1000 ";


std::vector<double> numbers(const Json& j, const char* key) {
  std::vector<double> r;
  for (const auto& v : at(j, key).as_array(key)) r.push_back(v.as_number());
  return r;
}

}  // namespace

TEST_CASE("panel tokens: the prompt's CLIP tokens with their weights, and the text encoder's output per token") {
  NEED_VIEWER();
  ViewerFixture fx;
  Shot s = fx.view("tokens", kRun + "--panel tokens");
  INFO(s.out);
  CHECK(s.code == 0);
  CHECK(no_validation_messages(s.out));
  CHECK(s.state() == "done");
  const Json& p = panel(s, "tokens");
  CHECK(stddev(crop(s.image, at(p, "rect"))) > 10);
  CHECK(stddev(crop(s.image, at(p, "window"))) > 10);      // the 77-cell window
  CHECK(stddev(crop(s.image, at(p, "norm_chart"))) > 10);  // the bars
  CHECK(stddev(crop(s.image, at(p, "strip"))) > 10);       // the selected token's vector

  // What the runtime says about this prompt.
  auto pipe = demo_pipeline();
  const auto wp = vksd::tokenize_weighted(pipe->tokenizer(), kPrompt);
  CHECK(at(p, "token_count").as_number() == wp.token_count);
  CHECK(at(p, "chunks").as_number() == 1);
  std::vector<double> want_w, want_ids;
  for (int i = 1; i <= wp.token_count; ++i) want_w.push_back(wp.weights[(size_t)i]), want_ids.push_back(wp.ids[(size_t)i]);
  const auto weights = numbers(p, "weights");
  REQUIRE(weights.size() == want_w.size());
  for (size_t i = 0; i < weights.size(); ++i) CHECK(weights[i] == doctest::Approx(want_w[i]).epsilon(1e-6));
  CHECK(weights.back() == doctest::Approx(1.3));  // "smiling"
  CHECK(numbers(p, "ids") == want_ids);
  CHECK(at(p, "negative_token_count").as_number() == 0);

  // The vectors: the run's conditioning, as SdPipeline::encode_prompt computes it.
  REQUIRE(at(p, "vectors").as_bool());
  const int W = pipe->config().clip.width;
  CHECK(at(p, "width").as_number() == W);
  const auto cond = pipe->encode_prompt(kPrompt, 1, 1);
  const auto norms = numbers(p, "norms");  // BOS, the tokens, EOS
  REQUIRE(norms.size() == (size_t)wp.token_count + 2);
  for (size_t i = 0; i < norms.size(); ++i) {
    double n = 0;
    for (int d = 0; d < W; ++d) n += (double)cond[i * W + d] * cond[i * W + d];
    CHECK(norms[i] == doctest::Approx(std::sqrt(n)).epsilon(1e-3));
  }
  // Emphasis 1.3 makes "smiling" the longest prompt-token vector.
  for (int i = 1; i < wp.token_count; ++i) CHECK(norms[(size_t)wp.token_count] > norms[(size_t)i]);
  CHECK(at(p, "selected").as_number() == wp.token_count);  // the emphasised token is selected first
}

TEST_CASE("panel tokens: before any run it tokenizes what is typed, long prompts in several 77-token chunks") {
  NEED_VIEWER();
  ViewerFixture fx;
  std::string negative;
  for (int i = 0; i < 40; ++i) negative += "dog face, ";
  // No prompt: nothing is generated; the negative prompt box holds a long text.
  Shot s = fx.view("tokens_idle", "-n " + shell_quote(negative) + " --window 1600x1000 --panel tokens");
  INFO(s.out);
  CHECK(s.code == 0);
  CHECK(no_validation_messages(s.out));
  CHECK(s.number("steps_recorded") == 0);
  const Json& p = panel(s, "tokens");
  CHECK(stddev(crop(s.image, at(p, "rect"))) > 10);
  auto pipe = demo_pipeline();
  const auto wn = vksd::tokenize_weighted(pipe->tokenizer(), negative);
  CHECK(wn.chunk_count >= 2);
  CHECK(at(p, "negative_token_count").as_number() == wn.token_count);
  CHECK(at(p, "token_count").as_number() == 0);
  CHECK(!at(p, "vectors").as_bool());
}

TEST_CASE("panel hood: the UNet step timed per dispatch (timestamp queries), by block, and memory by category") {
  NEED_VIEWER();
  ViewerFixture fx;
  Shot s = fx.view("hood", kRun + "--panel hood");
  Shot m = fx.view("hood_median", kRun + "--panel hood --panel-set hood.median=1");
  INFO(s.out << m.out);
  for (const Shot* sh : {&s, &m}) {
    CHECK(sh->code == 0);
    CHECK(no_validation_messages(sh->out));
    CHECK(sh->state() == "done");
    const Json& p = panel(*sh, "hood");
    CHECK(stddev(crop(sh->image, at(p, "rect"))) > 10);
    CHECK(at(p, "memory_categories").as_number() >= 3);  // weights, activations, preview, swapchain, ...
    const bool ts = at(p, "timestamps").as_bool();
    if (!ts) {
      MESSAGE("this device has no timestamp queries: nothing to time");
      continue;
    }
    // The app generated with profiling because the panel was open.
    CHECK(at(p, "timed_dispatches").as_number() > 0);
    CHECK(at(p, "unet_gpu_ms").as_number() > 0);
    CHECK(at(p, "blocks").as_number() >= 5);  // stem, down, mid, up, head at least
    CHECK(stddev(crop(sh->image, at(p, "chart"))) > 10);
  }
  CHECK(panel(s, "hood").find("timed_steps")->as_number() == 1);
  CHECK(panel(m, "hood").find("timed_steps")->as_number() == 6);  // every step of the run, median per dispatch
  CHECK(panel(s, "hood").find("timed_dispatches")->as_number() == panel(m, "hood").find("timed_dispatches")->as_number());
}

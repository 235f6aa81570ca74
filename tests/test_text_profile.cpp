// What the teaching panels "tokens" and "hood" read from the runtime, on the embedded demo model:
// the text conditioning generate() reports (Observer::on_text, GenerationJob::text()) is exactly
// SdPipeline::encode_prompt's; SdPipeline::tokenize is tokenize_weighted; with
// GenerateParams::profile the UNet's per-dispatch GPU times cover every dispatch, grouped by
// module scope, and change no number; without it the UNet graph has no query pool at all.
#include <doctest/doctest.h>

#include <memory>
#include <set>

#include "runtime/model/checkpoint.h"
#include "runtime/model/demo_model.h"
#include "runtime/diffusion/generation_job.h"
#include "runtime/gpu/graph.h"
#include "runtime/nn/unet.h"
#include "runtime/diffusion/pipeline.h"
#include "runtime/text/prompt.h"
#include "runtime/model/sd1_layout.h"
#include "runtime/model/weights.h"
#include "tests/test_util.h"

using namespace vksd;

namespace {


using test::demo_pipeline;

GenerateParams params(const std::string& prompt, const std::string& negative, double cfg = 5) {
  GenerateParams p;
  p.prompt = prompt;
  p.negative_prompt = negative;
  p.width = p.height = 64;
  p.steps = 3;
  p.cfg_scale = cfg;
  p.sampler = SamplerKind::Euler;
  p.seed = 7;
  return p;
}

// Copies of what the observer saw.
struct Recorder : Observer {
  int texts = 0;
  WeightedPrompt prompt, negative;
  bool has_negative = false;
  std::vector<float> cond, uncond;
  bool has_uncond = false;
  int chunks = 0, width = 0;
  std::vector<std::vector<float>> eps_cond, eps_uncond, x;
  std::vector<std::vector<DispatchTiming>> timings;
  int steps_without_timings = 0;
  void on_text(const TextEvent& e) override {
    ++texts;
    REQUIRE(e.prompt);
    REQUIRE(e.cond);
    prompt = *e.prompt;
    has_negative = e.negative != nullptr;
    if (e.negative) negative = *e.negative;
    cond = *e.cond;
    has_uncond = e.uncond != nullptr;
    if (e.uncond) uncond = *e.uncond;
    chunks = e.chunks, width = e.width;
  }
  void on_step(const StepEvent& e) override {
    eps_cond.push_back(*e.eps_cond);
    if (e.eps_uncond) eps_uncond.push_back(*e.eps_uncond);
    x.emplace_back(e.x->begin(), e.x->end());
    if (e.unet_timings) timings.push_back(*e.unet_timings);
    else ++steps_without_timings;
  }
};

void check_same_tokens(const WeightedPrompt& a, const WeightedPrompt& b) {
  CHECK(a.chunk_count == b.chunk_count);
  CHECK(a.token_count == b.token_count);
  CHECK(a.ids == b.ids);
  CHECK(a.weights == b.weights);
}

// A prompt of more than 75 tokens (two chunks).
std::string long_prompt() {
  std::string s;
  for (int i = 0; i < 30; ++i) s += "red apple, ";
  return s + "(smiling:1.3) face";
}

}  // namespace

TEST_CASE("text: SdPipeline::tokenize is tokenize_weighted (emphasis, chunks, padding), usable from another thread") {
  auto pipe = demo_pipeline();
  for (const std::string& prompt : {std::string("red apple, (smiling:1.3)"), std::string(""), std::string("[[dog]] face BREAK cat"),
                                   long_prompt()}) {
    INFO(prompt);
    const auto want = tokenize_weighted(pipe->tokenizer(), prompt);
    check_same_tokens(pipe->tokenize(prompt), want);
    auto padded = want;
    pad_to_chunks(padded, want.chunk_count + 2, pipe->tokenizer());
    check_same_tokens(pipe->tokenize(prompt, want.chunk_count + 2), padded);
  }
  const auto wp = pipe->tokenize("red apple, (smiling:1.3)");
  REQUIRE(wp.chunk_count == 1);
  CHECK(wp.ids[0] == pipe->tokenizer().bos_id());
  CHECK(wp.ids[(size_t)wp.token_count + 1] == pipe->tokenizer().eos_id());
  CHECK(wp.weights[(size_t)wp.token_count] == doctest::Approx(1.3));  // the last token is "smiling"
  CHECK(wp.has_emphasis());
  CHECK(pipe->tokenize(long_prompt()).chunk_count == 2);
  // While generate() runs on another thread (the viewer types while the job computes).
  GenerationJob job(*pipe);
  job.start(params("red apple", "blurry"));
  for (int i = 0; i < 200; ++i) check_same_tokens(pipe->tokenize(long_prompt()), tokenize_weighted(pipe->tokenizer(), long_prompt()));
  job.wait();
  CHECK(job.state() == JobState::Done);
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("text: the TextEvent's conditioning is SdPipeline::encode_prompt's, for prompt and negative, short and long") {
  auto pipe = demo_pipeline();
  struct Case {
    std::string prompt, negative;
    double cfg;
  };
  for (const Case& c : {Case{"red apple, (smiling:1.3)", "blurry", 5}, Case{long_prompt(), "", 5},
                        Case{"dog face", "cat", 1}}) {
    INFO(c.prompt << " / " << c.negative << " cfg " << c.cfg);
    Recorder r;
    pipe->generate(params(c.prompt, c.negative, c.cfg), &r);
    CHECK(r.texts == 1);
    const int W = pipe->config().clip.width;
    CHECK(r.width == W);
    const int chunks = c.prompt.size() > 200 ? 2 : 1;
    CHECK(r.chunks == chunks);
    REQUIRE(r.cond.size() == (size_t)chunks * 77 * W);
    CHECK(r.cond == pipe->encode_prompt(c.prompt, 1, chunks));
    check_same_tokens(r.prompt, pipe->tokenize(c.prompt, chunks));
    if (c.cfg != 1) {
      REQUIRE(r.has_uncond);
      REQUIRE(r.has_negative);
      CHECK(r.uncond == pipe->encode_prompt(c.negative, 1, chunks));  // padded to the prompt's chunks
      check_same_tokens(r.negative, pipe->tokenize(c.negative, chunks));
    } else {
      CHECK(!r.has_uncond);  // no guidance: the negative prompt is not encoded
      CHECK(!r.has_negative);
    }
  }
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("text: GenerationJob::text() keeps the run's conditioning, and start() clears it") {
  auto pipe = demo_pipeline();
  GenerationJob job(*pipe);
  CHECK(!job.text());
  const auto p1 = params("red apple, (smiling:1.3)", "blurry");
  job.start(p1);
  job.wait();
  REQUIRE(job.state() == JobState::Done);
  auto t1 = job.text();
  REQUIRE(t1);
  CHECK(t1->prompt_text == p1.prompt);
  CHECK(t1->negative_text == p1.negative_prompt);
  CHECK(t1->chunks == 1);
  CHECK(t1->width == pipe->config().clip.width);
  CHECK(t1->text_ms > 0);
  CHECK(t1->bytes() > t1->cond.size() * sizeof(float));
  CHECK(!job.last_unet_timings());  // not profiled
  // Second run: the old record is gone at once (or already replaced by the new run's).
  const auto p2 = params("dog face", "");
  job.start(p2);
  auto mid = job.text();
  CHECK((!mid || mid->prompt_text == p2.prompt));
  job.wait();
  auto t2 = job.text();
  REQUIRE(t2);
  CHECK(t2->prompt_text == p2.prompt);
  CHECK(t1->prompt_text == p1.prompt);  // records are immutable: the old one is unchanged
  CHECK(t2->cond == pipe->encode_prompt(p2.prompt, 1, 1));
  CHECK(t2->uncond == pipe->encode_prompt("", 1, 1));
  check_same_tokens(t2->prompt, pipe->tokenize(p2.prompt));
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("profile: off = no query pool, on = a timestamp per UNet dispatch, each with its module scope") {
  Checkpoint ck = Checkpoint::open(test::demo_model_path());
  const auto& cfg = ck.config().unet;
  const DType dt = test::ctx().compute_dtype();
  auto w = load_weights(test::ctx(), ck, kUNetPrefix, dt);
  const int ctx_len = 77;
  nn::UNet off(test::ctx(), *w, cfg, 2, 8, 8, ctx_len);
  CHECK(!off.graph().profiled());
  CHECK(off.graph().timings().empty());
  nn::NetOptions o;
  o.profile = true;
  nn::UNet on(test::ctx(), *w, cfg, 2, 8, 8, ctx_len, o);
  CHECK(on.graph().dispatch_count() == off.graph().dispatch_count());
  CHECK(on.peak_bytes() == off.peak_bytes());
  const bool ts = test::ctx().info().timestamps;
  MESSAGE("device " << test::ctx().info().name << ": timestamps " << std::string(ts ? "yes" : "no"));
  CHECK(on.graph().profiled() == ts);
  const auto ctx = test::randn((size_t)2 * ctx_len * cfg.context_dim, 1);
  const auto x = test::randn((size_t)2 * cfg.in_channels * 64, 2);
  const std::vector<float> t = {500.f, 500.f};
  off.set_context(ctx);
  on.set_context(ctx);
  CHECK(off.forward(x, t) == on.forward(x, t));  // timing changes no number
  if (!ts) return;
  const auto tim = on.graph().timings();
  REQUIRE(tim.size() == on.graph().dispatch_count());
  double total = 0;
  std::set<std::string> kinds;
  for (const auto& d : tim) {
    INFO(d.label << " in " << d.scope);
    CHECK(d.ms >= 0);
    total += d.ms;
    REQUIRE(!d.scope.empty());
    const auto sp = d.scope.find(' ');
    REQUIRE(sp != std::string::npos);
    kinds.insert(d.scope.substr(sp + 1));
  }
  CHECK(total > 0);
  // The demo UNet: 3 levels (attention on the first two), one ResBlock per level.
  for (const char* k : {"ResBlock", "SpatialTransformer", "self-attention", "cross-attention", "feed-forward", "Downsample",
                        "Upsample", "conv_in", "output head", "time embedding"})
    CHECK_MESSAGE(kinds.count(k) == 1, "no dispatch of kind " << k);
  CHECK(tim.front().scope == "time_embed time embedding");
  CHECK(tim.back().scope == "out output head");
  std::string scopes;
  for (const auto& d : tim) scopes += d.scope + ":" + d.label + " ";
  CHECK(scopes.find("input_blocks.1.1.transformer_blocks.0.attn2 cross-attention:attention") != std::string::npos);
  CHECK(scopes.find("middle_block.0 ResBlock:conv3x3") != std::string::npos);
  MESSAGE("demo UNet, batch 2, 8x8 latent: " << tim.size() << " dispatches, " << total << " ms on the device");
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("profile: GenerateParams::profile times every UNet dispatch of every step and leaves every number unchanged") {
  auto pipe = demo_pipeline();
  const auto p = params("red apple, (smiling:1.3)", "blurry");
  Recorder plain, timed, plain_again;
  auto r0 = pipe->generate(p, &plain);
  auto q = p;
  q.profile = true;
  auto r1 = pipe->generate(q, &timed);  // the UNet is rebuilt with queries
  auto r2 = pipe->generate(p, &plain_again);  // and back without
  CHECK(plain.timings.empty());
  CHECK(plain.steps_without_timings == 3);
  CHECK(plain_again.timings.empty());
  REQUIRE(timed.timings.size() == 3);
  CHECK(timed.eps_cond == plain.eps_cond);
  CHECK(timed.eps_uncond == plain.eps_uncond);
  CHECK(timed.x == plain.x);
  CHECK(r1.image.pixels == r0.image.pixels);
  CHECK(r2.image.pixels == r0.image.pixels);
  CHECK(plain_again.eps_cond == plain.eps_cond);
  // The UNet's dispatch count, from a graph built alike.
  Checkpoint ck = Checkpoint::open(test::demo_model_path());
  auto w = load_weights(test::ctx(), ck, kUNetPrefix, pipe->dtype());
  nn::UNet ref(test::ctx(), *w, ck.config().unet, 2, 8, 8, 77);
  for (const auto& tim : timed.timings) {
    if (!test::ctx().info().timestamps) {
      CHECK(tim.empty());
      continue;
    }
    CHECK(tim.size() == ref.graph().dispatch_count());
    double total = 0;
    for (const auto& d : tim) {
      total += d.ms;
      CHECK(!d.scope.empty());
    }
    CHECK(total > 0);
  }
  // The job keeps the newest step's.
  GenerationJob job(*pipe);
  job.start(q);
  job.wait();
  REQUIRE(job.state() == JobState::Done);
  auto lt = job.last_unet_timings();
  REQUIRE(lt);
  CHECK(lt->record == job.steps_recorded() - 1);
  CHECK(lt->index == job.record_ptr(lt->record)->index);
  if (test::ctx().info().timestamps) {
    CHECK(lt->dispatches.size() == ref.graph().dispatch_count());
    CHECK(lt->total_ms() > 0);
    // The first dispatches: where does the time go at the start of a command buffer?
    std::string head;
    for (size_t i = 0; i < 4 && i < lt->dispatches.size(); ++i)
      head += lt->dispatches[i].scope + "/" + lt->dispatches[i].label + " " + std::to_string(lt->dispatches[i].ms) + " ms; ";
    MESSAGE("first dispatches: " << head);
  }
  job.start(p);  // profile off: cleared, and none recorded
  job.wait();
  CHECK(!job.last_unet_timings());
  CHECK(test::ctx().validation_messages() == 0);
}

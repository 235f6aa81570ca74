// `vksd bench` on the tiny demo model: every part runs, the JSON has its fields, and the numbers
// hold against independent truth (the matmul's FLOP count is 2 n^3; a batch-2 UNet does exactly
// twice the work of batch 1; GFLOP/s is GFLOP over the median; each part's peak device memory
// holds at least its network's weights, counted from the architecture's tensor list).
#include <doctest/doctest.h>

#include <cstdlib>
#include <string>

#include "runtime/io/json.h"
#include "runtime/model/checkpoint.h"
#include "runtime/model/sd1_layout.h"
#include "tests/test_util.h"

namespace {

using vksd::Json;

const Json* row(const Json& rows, const std::string& part, int size, int batch) {
  for (auto& r : rows.as_array())
    if (r.find("part")->as_string() == part && r.find("size")->as_int() == size && r.find("batch")->as_int() == batch)
      return &r;
  return nullptr;
}

// Device bytes of the fp16 weights whose names start with prefix (parameters x 2).
double weight_bytes_f16(const vksd::ModelConfig& cfg, const std::string& prefix) {
  double n = 0;
  for (auto& s : vksd::sd1_layout(cfg))
    if (s.name.rfind(prefix, 0) == 0) n += (double)vksd::shape_numel(s.shape) * 2;
  return n;
}

}  // namespace

TEST_CASE("vksd bench: all parts on the demo model, JSON fields present and consistent") {
  if (vksd::test::vksd_binary().empty()) return;
  const std::string model = vksd::test::demo_model_path();
  const auto r = vksd::test::run_vksd("bench -m " + vksd::test::shell_quote(model) +
                                      " --sizes 64 --batches 1,2 --repeats 2 --steps 2 --top 3 --matmul-size 128"
                                      " --parts unet,text,vae,generate,matmul,torch --json");
  REQUIRE_MESSAGE(r.code == 0, r.out);
  const size_t at = r.out.rfind("\n{");
  const Json j = Json::parse(at == std::string::npos ? r.out : r.out.substr(at + 1));
  CHECK(!j.find("device")->as_string().empty());
  CHECK(!j.find("driver")->as_string().empty());
  CHECK(!j.find("date")->as_string().empty());
  REQUIRE(j.find("loadavg")->as_array().size() == 3);
  const Json& rows = *j.find("rows");

  // Every timed row: positive times, min <= median <= the slowest repeat, it/s and GFLOP/s agree.
  for (auto& x : rows.as_array()) {
    const std::string part = x.find("part")->as_string();
    if (part == "torch unet" && x.find("median_s")->as_number() == 0) continue;  // checked below
    INFO(part);
    const double mn = x.find("min_s")->as_number(), med = x.find("median_s")->as_number();
    CHECK(mn > 0);
    CHECK(mn <= med);
    double mx = 0;
    for (auto& v : x.find("runs_s")->as_array()) mx = std::max(mx, v.as_number());
    CHECK(med <= mx + 1e-9);
    CHECK(x.find("its")->as_number() > 0);
    const double gflop = x.find("gflop")->as_number(), gflops = x.find("gflops")->as_number();
    if (part != "matmul" && part != "generate" && gflop > 0) CHECK(gflops == doctest::Approx(gflop / med).epsilon(2e-3));
  }

  const vksd::ModelConfig cfg = vksd::Checkpoint::open(model).config();
  for (std::string dt : {"f16"}) {
    const Json* mm = row(rows, "matmul", 0, 1);
    REQUIRE(mm);
    CHECK(mm->find("gflop")->as_number() == doctest::Approx(2.0 * 128 * 128 * 128 * 1e-9).epsilon(1e-9));
    CHECK(mm->find("gflops")->as_number() == doctest::Approx(mm->find("gflop")->as_number() / mm->find("min_s")->as_number()).epsilon(2e-3));

    const Json *u1 = row(rows, "unet", 64, 1), *u2 = row(rows, "unet", 64, 2);
    REQUIRE(u1);
    REQUIRE(u2);
    CHECK(u1->find("dtype")->as_string() == dt);
    CHECK(u1->find("gflop")->as_number() > 0);
    CHECK(u2->find("gflop")->as_number() == doctest::Approx(2 * u1->find("gflop")->as_number()).epsilon(1e-9));
    CHECK(u1->find("vs_matmul")->as_number() > 0);
    CHECK((double)u1->find("peak_bytes")->as_int() >= weight_bytes_f16(cfg, vksd::kUNetPrefix));
    // Top kernels: at most 3, largest first, shares of one forward.
    const auto& top = u1->find("top")->as_array();
    REQUIRE(!top.empty());
    CHECK(top.size() <= 3);
    double share = 0;
    for (size_t i = 0; i < top.size(); ++i) {
      share += top[i].find("share")->as_number();
      CHECK(top[i].find("dispatches")->as_int() >= 1);
      if (i) CHECK(top[i].find("ms")->as_number() <= top[i - 1].find("ms")->as_number());
    }
    CHECK(share > 0);
    CHECK(share <= 1.0001);

    const Json* te = row(rows, "text", 0, 1);
    REQUIRE(te);
    CHECK(te->find("gflop")->as_number() > 0);
    CHECK((double)te->find("peak_bytes")->as_int() >= weight_bytes_f16(cfg, vksd::kClipPrefix));
    const Json* vae = row(rows, "vae", 64, 1);
    REQUIRE(vae);
    CHECK((double)vae->find("peak_bytes")->as_int() >= weight_bytes_f16(cfg, vksd::kVaePrefix));
    const Json* gen = row(rows, "generate", 64, 2);
    REQUIRE(gen);
    CHECK(gen->find("steps")->as_int() == 2);
    CHECK((double)gen->find("peak_bytes")->as_int() >= weight_bytes_f16(cfg, ""));
  }

  const Json& st = *j.find("startup");
  CHECK(st.find("to_first_step_s")->as_number() >=
        st.find("compile_s")->as_number() + st.find("first_forward_s")->as_number());
  CHECK(st.find("steady_forward_s")->as_number() > 0);

  // PyTorch on the same UNet: where this machine has torch, the ratio is measured.
  const Json* t1 = row(rows, "torch unet", 64, 1);
  REQUIRE(t1);
  if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0) {
    INFO(t1->find("note")->as_string());
    CHECK(t1->find("median_s")->as_number() > 0);
    CHECK(row(rows, "unet", 64, 1)->find("vs_torch")->as_number() > 0);
    CHECK(!j.find("torch")->as_string().empty());
  } else {
    CHECK(!t1->find("note")->as_string().empty());  // says why it did not run
  }
}

TEST_CASE("vksd bench: bad options are refused with a message") {
  if (vksd::test::vksd_binary().empty()) return;
  const std::string m = " -m " + vksd::test::shell_quote(vksd::test::demo_model_path());
  auto r = vksd::test::run_vksd("bench" + m + " --parts unet,bogus");
  CHECK(r.code != 0);
  CHECK(r.out.find("unknown part 'bogus'") != std::string::npos);
  r = vksd::test::run_vksd("bench" + m + " --sizes 72 --parts unet");
  CHECK(r.code != 0);
  CHECK(r.out.find("size 72 must be a positive multiple of") != std::string::npos);
  r = vksd::test::run_vksd("bench" + m + " --dtypes fp8");
  CHECK(r.code != 0);
  CHECK(r.out.find("'fp8'") != std::string::npos);
}

// The torch-compatible generator: bit-exact against the reference noise (made by torch on the
// CPU), against std::mt19937 for the engine, and against a live torch for odd sizes when
// /usr/bin/python3 with torch is present.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <unistd.h>

#include "runtime/diffusion/rng.h"
#include "tests/test_util.h"

using namespace vksd;

static bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

TEST_CASE("rng: MT19937 engine equals std::mt19937 (same seeding, 100k draws)") {
  for (uint32_t seed : {0u, 1u, 42u, 5489u, 0xffffffffu}) {
    Mt19937 ours(seed);
    std::mt19937 ref(seed);
    bool all = true;
    for (int i = 0; i < 100000; ++i) all = all && ours.next_u32() == ref();
    CHECK(all);
  }
  // torch.manual_seed keeps the low 32 bits of a 64-bit seed in the engine's init.
  Mt19937 wide((uint64_t(7) << 32) | 42u), narrow(42u);
  CHECK(wide.next_u32() == narrow.next_u32());
}

TEST_CASE("rng: uniform draws are 24-bit / 53-bit fractions of the engine output") {
  TorchRng g(3);
  Mt19937 m(3);
  for (int i = 0; i < 1000; ++i) {
    uint32_t r = m.next_u32();
    CHECK(g.uniform_float() == (float)(r & 0xffffff) / 16777216.0f);
  }
  TorchRng g2(4);
  Mt19937 m2(4);
  for (int i = 0; i < 1000; ++i) {
    uint64_t hi = m2.next_u32(), lo = m2.next_u32();
    CHECK(g2.uniform_double() == (double)(((hi << 32) | lo) & ((1ull << 53) - 1)) / 9007199254740992.0);
  }
}

TEST_CASE("rng: torch.randn reference noise reproduced bit for bit (seeds 42, 100, 101, 7)") {
  REQUIRE_MESSAGE(!(!test::shared_available()), "reference data missing (../shared beside the checkout)");
  struct Case { const char* file; uint64_t seed; };
  for (auto c : {Case{"euler_noise.npy", 42}, Case{"ddim_xT.npy", 42}, Case{"unet_x.npy", 100},
                 Case{"unet_batch_x.npy", 101}, Case{"vae_dec_in.npy", 7}}) {
    auto ref = test::load_npy(test::vectors_dir() + "/" + c.file);
    auto ours = torch_randn(c.seed, (int64_t)ref.data.size());
    INFO(c.file);
    CHECK(same_bits(ours, ref.data));
  }
}

TEST_CASE("rng: randn properties (tail block recomputed, small sizes use the cached double path)") {
  // Sizes that are multiples of 16 share their prefix: each block of 16 depends only on its 16
  // uniforms, and the uniforms are drawn in order.
  auto a = torch_randn(9, 64), b = torch_randn(9, 32);
  CHECK(std::equal(b.begin(), b.end(), a.begin()));
  // With a tail (n % 16 != 0) the last 16 values are redrawn from 16 fresh uniforms: the first
  // n - 16 values still equal the multiple-of-16 prefix, the last 16 do not.
  auto c = torch_randn(9, 40);
  CHECK(std::equal(c.begin(), c.begin() + 24, a.begin()));
  CHECK(!std::equal(c.begin() + 24, c.end(), a.begin() + 24));
  // Below 16 elements every value comes from the double Box-Muller, pairs sharing one draw:
  // value 2k = r cos(theta), value 2k+1 = r sin(theta), so v0^2 + v1^2 = -2 log(1 - u2).
  TorchRng g(11);
  double u1 = g.uniform_double(), u2 = g.uniform_double();
  double r2 = -2.0 * std::log1p(-u2);
  auto s = torch_randn(11, 2);
  CHECK(std::fabs((double)s[0] * s[0] + (double)s[1] * s[1] - r2) < 1e-5 * r2);
  CHECK(std::fabs(std::atan2((double)s[1], (double)s[0]) - std::remainder(2 * M_PI * u1, 2 * M_PI)) < 1e-5);
  // Moments over a large draw.
  auto big = torch_randn(1, 1 << 20);
  double m = 0, v = 0;
  for (float x : big) m += x;
  m /= big.size();
  for (float x : big) v += (x - m) * (x - m);
  v /= big.size();
  CHECK(std::fabs(m) < 5e-3);
  CHECK(std::fabs(v - 1.0) < 5e-3);
}

// Odd sizes against the real thing, when it is installed (not committed output: computed now).
TEST_CASE("rng: odd sizes and consecutive calls match live torch (skipped without torch)") {
  const char* py = "/usr/bin/python3";
  if (!std::filesystem::exists(py) || std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) {
    MESSAGE("skipped: /usr/bin/python3 with torch not available");
    return;
  }
  struct Case { uint64_t seed; int64_t n, m; };  // randn(n) then randn(m) on one generator
  std::vector<Case> cases = {{0, 1, 0}, {1, 5, 3}, {2, 15, 1}, {3, 17, 0}, {4, 31, 0},
                             {5, 100, 7}, {6, 7, 100}, {1234567890123ull, 333, 0}, {8, 16 * 64 * 64 + 5, 0}};
  auto dir = std::filesystem::temp_directory_path() / ("vksd_rng_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto out = dir / "t.bin";
  // One interpreter for every case (importing torch takes seconds): all outputs concatenated.
  std::string script = "import torch,sys\nf=open(sys.argv[1],'wb')\n";
  for (auto c : cases)
    script += "torch.manual_seed(" + std::to_string(c.seed) + "); a=torch.randn(" + std::to_string(c.n) +
              "); b=torch.randn(" + std::to_string(c.m) + "); f.write(torch.cat([a,b]).numpy().tobytes())\n";
  {
    FILE* sf = std::fopen((dir / "gen.py").c_str(), "w");
    REQUIRE(sf);
    std::fputs(script.c_str(), sf);
    std::fclose(sf);
  }
  // The reference data was made with torch's AVX2 kernel (any x86-64 CPU since 2013).
  REQUIRE(std::system(("ATEN_CPU_CAPABILITY=avx2 " + std::string(py) + " " + (dir / "gen.py").string() + " " +
                       out.string()).c_str()) == 0);
  FILE* f = std::fopen(out.c_str(), "rb");
  REQUIRE(f);
  for (auto c : cases) {
    std::vector<float> ref((size_t)(c.n + c.m));
    REQUIRE(std::fread(ref.data(), 4, ref.size(), f) == ref.size());
    TorchRng g(c.seed);
    auto a = g.randn(c.n);
    auto b = g.randn(c.m);
    a.insert(a.end(), b.begin(), b.end());
    INFO("seed " << c.seed << " sizes " << c.n << ", " << c.m);
    CHECK(same_bits(a, ref));
  }
  std::fclose(f);
  std::filesystem::remove_all(dir);
}

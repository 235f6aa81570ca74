// Soak: one process, one pipeline, 50 images back to back through the library API, changing
// prompt, size, sampler, guidance and txt2img/img2img every image. Host RSS and device memory
// must stay flat once every variant has been seen (a leak of a graph, a weight upload or an
// image buffer per run would grow them), and the validation layer must stay silent.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "runtime/diffusion/pipeline.h"
#include "runtime/diffusion/samplers.h"
#include "runtime/io/image_io.h"
#include "tests/test_util.h"

namespace {

uint64_t rss_bytes() {
  long pages = 0, resident = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
  std::fclose(f);
  return (uint64_t)resident * (uint64_t)::sysconf(_SC_PAGESIZE);
}

uint64_t device_bytes() {
  uint64_t n = 0;
  for (auto& [k, v] : vksd::test::ctx().memory_in_use()) n += v;
  return n;
}

}  // namespace

TEST_CASE("soak: 50 images in one process, memory flat after the first round of variants") {
  auto pipe = vksd::test::demo_pipeline();
  const uint64_t validation0 = vksd::test::validation_messages_so_far();
  const std::vector<std::pair<int, int>> sizes = {{64, 64}, {96, 64}, {64, 96}};
  const std::vector<vksd::SamplerKind> samplers = {vksd::SamplerKind::Euler, vksd::SamplerKind::EulerAncestral,
                                                   vksd::SamplerKind::DDIM, vksd::SamplerKind::DpmPP2M,
                                                   vksd::SamplerKind::DpmPP2MKarras};
  const std::vector<double> cfgs = {7.0, 1.0, 4.5, 9.0};
  std::vector<uint64_t> rss, dev;
  std::vector<vksd::Image> last_of_size(sizes.size());
  const int n = 50;
  for (int i = 0; i < n; ++i) {
    vksd::GenerateParams p;
    const size_t s = (size_t)i % sizes.size();
    p.width = sizes[s].first, p.height = sizes[s].second;
    p.prompt = "a " + std::string(i % 2 ? "red" : "blue") + " circle number " + std::to_string(i);
    p.negative_prompt = i % 3 ? "" : "blurry";
    p.sampler = samplers[(size_t)i % samplers.size()];
    p.cfg_scale = cfgs[(size_t)i % cfgs.size()];
    p.steps = 2;
    p.seed = (uint64_t)i;
    if (i % 4 == 3 && last_of_size[s].width) {  // img2img from an earlier image of this size
      p.init_image = last_of_size[s];
      p.strength = 0.6;
      p.steps = 3;
    }
    auto r = pipe->generate(p);
    REQUIRE(r.image.width == p.width);
    last_of_size[s] = r.image;
    rss.push_back(rss_bytes());
    dev.push_back(device_bytes());
  }
  // Every combination of size, sampler family and guidance on/off has run by image 20; from
  // then on nothing may grow: RSS within 2% and device memory within 2% of image 20's.
  const int from = 20;
  const uint64_t rss_max = *std::max_element(rss.begin() + from, rss.end());
  const uint64_t dev_max = *std::max_element(dev.begin() + from, dev.end());
  MESSAGE("RSS MiB: image 1 " << (rss[0] >> 20) << ", image " << from + 1 << " " << (rss[from] >> 20) << ", max after "
                              << (rss_max >> 20) << ", last " << (rss.back() >> 20) << "; device KiB: image " << from + 1
                              << " " << (dev[from] >> 10) << ", max after " << (dev_max >> 10) << ", last " << (dev.back() >> 10));
  CHECK(rss_max <= rss[from] + rss[from] / 50);
  // Graph arenas depend on the size and on the guidance batch, so device memory is compared
  // between images of the same variant: the pattern (3 sizes x 4 guidance values, img2img every
  // 4th) repeats every 12 images.
  for (int i = from + 12; i < n; ++i) {
    CAPTURE(i);
    CHECK(dev[(size_t)i] <= dev[(size_t)i - 12] + dev[(size_t)i - 12] / 50);
  }
  CHECK(vksd::test::validation_messages_so_far() == validation0);
}

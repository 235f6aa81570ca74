// The A1111 request parser (server/a1111.h) on real models, no HTTP: SDXL's size conditioning
// fields reach GenerateParams, are echoed resolved (0 = the image size) in the response's
// "parameters" for a model that takes them, and are range-checked with the field named.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "runtime/diffusion/sdxl_size_conditioning.h"
#include "server/a1111.h"
#include "tests/sdxl_tiny.h"
#include "tests/test_util.h"

using nlohmann::json;
using namespace vksd;

TEST_CASE("server request: SDXL size conditioning fields, resolved in the echo, checked by name") {
  REQUIRE_SHARED();
  SdPipeline pipe(test::ctx(), test::sdxl_tiny::pipeline_options());
  REQUIRE(pipe.config().size_embed_dim > 0);
  const int m = pipe.size_multiple();
  json body = {{"prompt", "a cat"}, {"width", 2 * m}, {"height", m}, {"original_width", 1024}, {"crop_top", 16}};
  const server::ImageRequest r = server::parse_image_request(body, false, pipe, {});
  CHECK(r.params.original_width == 1024);
  CHECK(r.params.original_height == 0);  // not given: the image size, resolved below
  CHECK(r.params.crop_top == 16);
  CHECK(r.params.crop_left == 0);
  const SdxlSizeConditioning sc = size_conditioning(r.params);
  CHECK(sc.original_w == 1024);
  CHECK(sc.original_h == m);
  CHECK(sc.target_w == 2 * m);
  CHECK(sc.target_h == m);
  CHECK(r.echo.at("original_width") == 1024);
  CHECK(r.echo.at("original_height") == m);
  CHECK(r.echo.at("target_width") == 2 * m);
  CHECK(r.echo.at("target_height") == m);
  CHECK(r.echo.at("crop_top") == 16);
  CHECK(r.echo.at("crop_left") == 0);

  for (const char* f : {"original_width", "target_height", "crop_left"}) {
    json bad = body;
    bad[f] = -1;
    try {
      server::parse_image_request(bad, false, pipe, {});
      FAIL("accepted " << f << " = -1");
    } catch (const server::RequestError& e) {
      CHECK(e.field == f);
      CHECK(std::string(e.what()).find(std::string(f) + " must be within [0, ") != std::string::npos);
    }
  }
}

TEST_CASE("server request: a model without size conditioning echoes no size fields") {
  auto pipe = test::demo_pipeline();
  REQUIRE(pipe->config().size_embed_dim == 0);
  const server::ImageRequest r =
      server::parse_image_request(json{{"prompt", "x"}, {"width", 64}, {"height", 64}, {"original_width", 512}}, false, *pipe, {});
  CHECK(r.params.original_width == 512);  // parsed, and ignored by this model's conditioning
  CHECK_FALSE(r.echo.contains("target_width"));
}

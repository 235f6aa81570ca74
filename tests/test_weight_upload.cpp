// Weights reach the device through the staging ring (runtime/gpu/staging.h) in batches: every
// tensor of a checkpoint lands bit-identical to what the per-tensor f32 path placed before
// (read_f32, then f32_to_f16 rounding for fp16 storage), whatever the file stores (fp16 and
// fp32 files, into fp16 and fp32 storage: two straight copies, a widening and a rounding), with
// one fence wait per staging slot instead of per tensor.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <unistd.h>

#include "runtime/gpu/context.h"
#include "runtime/gpu/memory.h"
#include "runtime/gpu/staging.h"
#include "runtime/model/checkpoint.h"
#include "runtime/model/network_prefixes.h"
#include "runtime/model/random_checkpoint.h"
#include "runtime/model/weights.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using namespace vksd;

namespace {

// The bytes the old loader uploaded: read_f32 (exact widening), stored as f32 or rounded to f16
// by f32_to_f16 (round to nearest even).
std::vector<uint8_t> reference_bytes(const Checkpoint& ck, const std::string& name, DType storage) {
  const std::vector<float> v = ck.read_f32(name);
  std::vector<uint8_t> out(v.size() * dtype_size(storage));
  for (size_t i = 0; i < v.size(); ++i) {
    if (storage == DType::F32) {
      std::memcpy(&out[i * 4], &v[i], 4);
    } else {
      const uint16_t h = f32_to_f16(v[i]);
      std::memcpy(&out[i * 2], &h, 2);
    }
  }
  return out;
}

// Loads every network of `ck` as `storage` and compares every tensor's device bytes.
void check_all_tensors(Context& c, const Checkpoint& ck, DType storage) {
  for (const char* prefix : {kClipPrefix, kUNetPrefix, kVaePrefix}) {
    CAPTURE(prefix);
    const uint64_t waits0 = c.staging().waits();
    auto ws = load_weights(c, ck, prefix, storage);
    const uint64_t waits = c.staging().waits() - waits0;
    const size_t tensors = ws->names().size();
    // Batched: one wait per filled slot (plus the last, partly filled one), not one per tensor.
    CHECK(waits <= ws->bytes() / StagingRing::batch_slot_bytes(ws->bytes()) + 1);
    CHECK(waits < tensors);
    size_t differing = 0;
    std::vector<uint8_t> have;
    for (const std::string& n : ws->names()) {
      const DeviceTensor& t = ws->get(n, ck.shape(n));
      REQUIRE(t.dtype == storage);
      have.resize((size_t)t.bytes());
      download_bytes(c, t.buffer, t.offset, have.data(), t.bytes());
      if (have != reference_bytes(ck, n, storage)) {
        ++differing;
        MESSAGE("differs: " << n);
      }
    }
    CHECK(tensors > 10);
    CHECK(differing == 0);
  }
}

}  // namespace

TEST_CASE("weight upload: the demo model (an fp16 file) lands bit-identical, fp16 and fp32 storage") {
  Context& c = test::ctx();
  const Checkpoint ck = Checkpoint::open(test::demo_model_path());
  for (const std::string& n : ck.tensor_names()) REQUIRE(ck.dtype(n) == StDType::F16);
  for (DType storage : {DType::F16, DType::F32}) {
    CAPTURE(dtype_name(storage));
    check_all_tensors(c, ck, storage);
  }
  CHECK(c.validation_messages() == 0);
}

TEST_CASE("weight upload: an fp16 and an fp32 random checkpoint land bit-identical in both storages") {
  Context& c = test::ctx();
  ModelConfig cfg;  // small SD 1.x shapes, so the test is quick
  cfg.unet.model_channels = 32;
  cfg.unet.channel_mult = {1, 2};
  cfg.unet.attention_levels = {true, false};
  cfg.unet.num_res_blocks = 1;
  cfg.unet.context_dim = 96;
  cfg.vae.ch = 32;
  cfg.vae.ch_mult = {1, 2};
  cfg.vae.num_res_blocks = 1;
  cfg.clip.width = 96;
  cfg.clip.layers = 2;
  cfg.clip.heads = 12;
  cfg.clip.mlp_dim = 384;
  cfg.clip.vocab_size = 1000;
  const fs::path dir = fs::temp_directory_path() / ("vksd_wupload_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  for (DType file : {DType::F16, DType::F32}) {
    const std::string path = (dir / (std::string(dtype_name(file)) + ".safetensors")).string();
    write_random_checkpoint(cfg, path, file);
    const Checkpoint ck = Checkpoint::open(path);
    for (DType storage : {DType::F16, DType::F32}) {
      CAPTURE(dtype_name(file));
      CAPTURE(dtype_name(storage));
      check_all_tensors(c, ck, storage);
    }
  }
  fs::remove_all(dir);
  CHECK(c.validation_messages() == 0);
}

TEST_CASE("staging ring: a batch wrapping the ring several times, tensors across slot boundaries") {
  Context& c = test::ctx();
  Arena arena(c, "test");
  // 5 x 3 MiB + small odd sizes: > kSlots x kSlotBytes in all, so slots are reused while the
  // batch is open; the 3 MiB pieces straddle slot boundaries.
  std::vector<DeviceTensor> ts;
  std::vector<std::vector<uint8_t>> data;
  uint32_t x = 12345;
  for (int i = 0; i < 40; ++i) {
    const int64_t n = i % 4 == 0 ? (int64_t)(3u << 20) + 7 : 1000 + 37 * i;
    ts.push_back(arena.alloc({n}, DType::F32));
    std::vector<uint8_t> d((size_t)n * 4);
    for (auto& b : d) b = (uint8_t)((x = x * 1664525u + 1013904223u) >> 24);
    data.push_back(std::move(d));
  }
  const uint64_t waits0 = c.staging().waits();
  {
    UploadBatch batch(c);
    std::vector<uint8_t> scratch;
    for (size_t i = 0; i < ts.size(); ++i) {
      scratch = data[i];  // the host copy may change right after bytes() returns
      batch.bytes(ts[i].buffer, ts[i].offset, scratch.data(), scratch.size());
      std::fill(scratch.begin(), scratch.end(), 0);
    }
    batch.finish();
  }
  // finish() gave the full-size slots' memory back.
  CHECK(c.memory_in_use().count("staging") == 0);
  const uint64_t waits = c.staging().waits() - waits0;
  uint64_t total = 0;
  for (auto& d : data) total += d.size();
  CHECK(total > (uint64_t)StagingRing::kSlots * StagingRing::kSlotBytes);
  CHECK(waits <= total / StagingRing::kSlotBytes + 1);
  for (size_t i = 0; i < ts.size(); ++i) {
    std::vector<uint8_t> have(data[i].size());
    download_bytes(c, ts[i].buffer, ts[i].offset, have.data(), have.size());
    CHECK_MESSAGE(have == data[i], "tensor " << i);
  }
  // Between transfers the ring keeps at most one small slot: the 12 MiB downloads' slots are
  // freed after them, and a small transfer takes a small slot.
  CHECK(c.memory_in_use()["staging"] <= StagingRing::kSmallSlotBytes);
  c.staging().trim();
  std::vector<uint8_t> small(4096);
  download_bytes(c, ts[1].buffer, ts[1].offset, small.data(), small.size());
  CHECK(c.memory_in_use()["staging"] == StagingRing::kSmallSlotBytes);
  CHECK(c.validation_messages() == 0);
}

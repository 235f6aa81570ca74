// Arena (runtime/gpu/memory.h): tensors fill the tails of earlier blocks, and with expect_total a
// new block is only as large as what is still expected (the weight store's case), so the device
// memory reserved is the tensors' own size, not whole blocks.
#include <doctest/doctest.h>

#include "runtime/gpu/memory.h"
#include "tests/test_util.h"

using namespace vksd;

TEST_CASE("arena: earlier block tails are filled, and expect_total sizes the last block") {
  auto& c = test::ctx();
  constexpr VkDeviceSize kBlock = 1 << 20;
  {
    Arena a(c, "test", kBlock);
    const DeviceTensor t1 = a.alloc({600 << 10}, DType::F32);  // 2.4 MiB: own block
    CHECK(a.reserved_bytes() == (VkDeviceSize)(600 << 10) * 4);
    const DeviceTensor t2 = a.alloc({150 << 10}, DType::F32);  // 600 KiB: a new 1 MiB block
    const DeviceTensor t3 = a.alloc({150 << 10}, DType::F32);  // does not fit its tail: another block
    const DeviceTensor t4 = a.alloc({50 << 10}, DType::F32);   // 200 KiB: fits the tail of t2's block
    CHECK(t2.buffer != t1.buffer);
    CHECK(t3.buffer != t2.buffer);
    CHECK(t4.buffer == t2.buffer);
    CHECK(t4.offset >= t2.offset + t2.bytes());
    CHECK(t4.offset % kTensorAlignment == 0);
    CHECK(t4.offset + t4.bytes() <= kBlock);
    CHECK(a.reserved_bytes() == (VkDeviceSize)(600 << 10) * 4 + 2 * kBlock);
  }
  {
    // Three tensors of 300 KiB expected, 1 MiB blocks: the one block is 900 KiB, not 1 MiB.
    Arena a(c, "test", kBlock);
    a.expect_total(3 * (VkDeviceSize)(300 << 10));
    for (int i = 0; i < 3; ++i) a.alloc({75 << 10}, DType::F32);
    CHECK(a.reserved_bytes() == 3 * (VkDeviceSize)(300 << 10));
    // More than expected still works: a further block.
    a.alloc({75 << 10}, DType::F32);
    CHECK(a.reserved_bytes() >= 4 * (VkDeviceSize)(300 << 10));
  }
  CHECK(c.validation_messages() == 0);
}

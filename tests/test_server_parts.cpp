// The server's parts that need no HTTP and no device: base64 (RFC 4648's test vectors) and the
// device queue (first come, first served; a full line is refused at once).
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "server/base64.h"
#include "server/device_queue.h"

using namespace vksd::server;

TEST_CASE("server base64: RFC 4648 test vectors both ways, data URLs, whitespace, and garbage refused") {
  const std::pair<std::string, std::string> vectors[] = {{"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},
                                                         {"foo", "Zm9v"},  {"foob", "Zm9vYg=="},   {"fooba", "Zm9vYmE="},
                                                         {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, enc] : vectors) {
    CHECK(base64_encode((const uint8_t*)plain.data(), plain.size()) == enc);
    auto dec = base64_decode(enc);
    REQUIRE(dec);
    CHECK(std::string(dec->begin(), dec->end()) == plain);
  }
  std::vector<uint8_t> all(256);
  for (int i = 0; i < 256; ++i) all[(size_t)i] = (uint8_t)i;
  CHECK(*base64_decode(base64_encode(all)) == all);
  CHECK(*base64_decode("data:image/png;base64,Zm9v") == std::vector<uint8_t>{'f', 'o', 'o'});
  CHECK(*base64_decode("Zm9v\nYmFy") == std::vector<uint8_t>{'f', 'o', 'o', 'b', 'a', 'r'});
  CHECK(*base64_decode("Zm8") == std::vector<uint8_t>{'f', 'o'});  // padding left out
  CHECK_FALSE(base64_decode("Zm9v!"));
  CHECK_FALSE(base64_decode("Zg==Zg=="));  // data after the padding
  CHECK_FALSE(base64_decode("Z"));         // a lone 6 bits
}

TEST_CASE("server device queue: one on the device, waiting in arrival order, a full line refused at once") {
  DeviceQueue q(2);
  auto first = q.enter();
  REQUIRE(first);
  CHECK(q.waiting() == 0);
  std::mutex mu;
  std::vector<int> order;
  std::vector<std::thread> waiters;
  for (int i = 0; i < 2; ++i) {
    waiters.emplace_back([&, i] {
      auto t = q.enter();
      REQUIRE(t);
      std::lock_guard<std::mutex> lk(mu);
      order.push_back(i);
    });
    // The next one arrives only after this one is in line, so arrival order is known.
    for (int spin = 0; q.waiting() != i + 1 && spin < 5000; ++spin) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    REQUIRE(q.waiting() == i + 1);
  }
  CHECK_FALSE(q.enter());  // two waiting: a third is refused without blocking
  {
    std::lock_guard<std::mutex> lk(mu);
    CHECK(order.empty());  // nobody passed the one on the device
  }
  first.reset();
  for (auto& t : waiters) t.join();
  CHECK(order == std::vector<int>{0, 1});
  CHECK(q.waiting() == 0);
  CHECK(q.enter());  // free again
}

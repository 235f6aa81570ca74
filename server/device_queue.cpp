#include "server/device_queue.h"

namespace vksd::server {

std::optional<DeviceQueue::Ticket> DeviceQueue::enter() {
  std::unique_lock<std::mutex> lk(mu_);
  if (next_ > done_ && waiting_locked() >= capacity_) return std::nullopt;
  const uint64_t mine = next_++;
  cv_.wait(lk, [&] { return done_ == mine; });
  return Ticket(this);
}

void DeviceQueue::leave() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    ++done_;
  }
  cv_.notify_all();
}

int DeviceQueue::waiting() const {
  std::lock_guard<std::mutex> lk(mu_);
  return waiting_locked();
}

}  // namespace vksd::server

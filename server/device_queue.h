// First come, first served access to the one device, with a bounded waiting line: a request
// either gets a Ticket (and then waits its turn in arrival order) or is refused at once when
// `capacity` requests are already waiting (the server answers 503).
#pragma once
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>

namespace vksd::server {

class DeviceQueue {
 public:
  explicit DeviceQueue(int capacity) : capacity_(capacity) {}

  // Holding one means it is this request's turn on the device; destroying it passes the turn on.
  class Ticket {
   public:
    Ticket(Ticket&& o) noexcept : q_(o.q_) { o.q_ = nullptr; }
    Ticket(const Ticket&) = delete;
    ~Ticket() {
      if (q_) q_->leave();
    }

   private:
    friend class DeviceQueue;
    explicit Ticket(DeviceQueue* q) : q_(q) {}
    DeviceQueue* q_;
  };

  // Blocks until it is this caller's turn; nullopt at once when `capacity` requests already wait.
  std::optional<Ticket> enter();
  int waiting() const;  // requests waiting for their turn (not counting the one on the device)

 private:
  void leave();
  int waiting_locked() const { return next_ > done_ ? (int)(next_ - done_ - 1) : 0; }
  const int capacity_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  uint64_t next_ = 0;  // tickets handed out; the k-th (from 0) gets its turn when done_ == k
  uint64_t done_ = 0;  // tickets given back
};

}  // namespace vksd::server

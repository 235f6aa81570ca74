// StagingRing: the one road between host memory and device buffers (upload_bytes,
// download_bytes and UploadBatch in memory.h go through it).
//
// A few persistent host-visible slots are reused for every transfer instead of allocating a
// staging buffer, a command buffer and waiting on a fence per tensor: uploads are copied into
// the current slot and recorded as copies in that slot's command buffer; a full slot is
// submitted with its own fence and the next slot filled meanwhile; a slot is waited on only when
// it comes round again, or at flush(). Loading SD 1.5 (1,100 tensors) thus makes ~one submit
// per slot-full instead of one allocation + submit + wait per tensor. Slots are large (up to
// kSlotBytes) only while a batch runs; trim() frees them after one. Between transfers the ring
// keeps one kSmallSlotBytes slot (enough for latents and timesteps), no more.
//
// One ring per Context, used from any thread: every public call takes the ring's lock.
#pragma once
#include <memory>
#include <mutex>
#include <vector>
#include <vulkan/vulkan.h>

namespace vksd {

class Buffer;
class Context;

class StagingRing {
 public:
  static constexpr VkDeviceSize kSlotBytes = 8ull << 20;  // the most one slot holds
  // The one slot kept between single transfers (latents, timesteps); a larger transfer takes
  // a slot of its size for as long as it runs.
  static constexpr VkDeviceSize kSmallSlotBytes = 64ull << 10;
  static constexpr int kSlots = 4;

  // The slot size for a batch of `expected` bytes (0 = unknown): the ring holds at most an
  // eighth of what the batch moves, so that loading a small model hardly raises its peak
  // device memory (the demo model's is 17 MiB), and at most kSlots x kSlotBytes.
  static VkDeviceSize batch_slot_bytes(VkDeviceSize expected);

  explicit StagingRing(Context& ctx);
  ~StagingRing();  // waits for copies in flight (their errors ignored: it may run while unwinding)
  StagingRing(const StagingRing&) = delete;
  StagingRing& operator=(const StagingRing&) = delete;

  // Queues a copy of `bytes` host bytes to dst at `offset`. The host memory may be reused as
  // soon as this returns; the device sees the bytes once flush() has returned. Copies queued
  // before one flush must not overlap each other in dst. `batch`: more uploads follow (slots
  // of the batch size, expect_batch); else a slot as large as this transfer needs is enough.
  void upload(VkBuffer dst, VkDeviceSize offset, const void* data, VkDeviceSize bytes, bool batch = false);
  // The next batch moves about `bytes` (0 = unknown): its slots are batch_slot_bytes(bytes),
  // until trim().
  void expect_batch(VkDeviceSize bytes);
  // Submits what is recorded and waits for every slot in flight: afterwards all queued uploads
  // are complete and visible to later GPU work. Slots larger than kSmallSlotBytes are freed.
  void flush();
  // Device -> host; complete on return (queued uploads are flushed first; slots larger than
  // kSmallSlotBytes are freed after).
  void download(VkBuffer src, VkDeviceSize offset, void* data, VkDeviceSize bytes);
  // Flushes, then frees the slots' memory (after a batch: the weights are loaded and only
  // small transfers follow; a slot is made again when needed).
  void trim();

  // Fence waits made so far (one per submitted slot): what batching saves, for tests.
  uint64_t waits() const;

 private:
  struct Slot {
    std::unique_ptr<Buffer> buffer;  // allocated at first use
    VkCommandBuffer cb = VK_NULL_HANDLE;
    VkFence fence = VK_NULL_HANDLE;
    VkDeviceSize used = 0;
    bool recording = false, in_flight = false;
  };
  // The current slot, recording (waited for and begun if needed), its buffer at least
  // min(want, kSlotBytes) bytes when it is begun now.
  Slot& begin_slot(VkDeviceSize want);
  void submit(Slot& s);  // ends and submits the slot's copies, moves to the next slot
  void wait(Slot& s);    // waits for an in-flight slot (fault hook; Error on failure)
  void flush_locked();  // afterwards no slot is in flight and the ring starts again at slot 0
  void shrink_locked();  // frees idle slots larger than kSmallSlotBytes

  Context& ctx_;
  mutable std::mutex mutex_;
  VkCommandPool pool_ = VK_NULL_HANDLE;
  std::vector<Slot> slots_;
  int current_ = 0;
  uint64_t waits_ = 0;
  VkDeviceSize batch_slot_ = kSlotBytes;
};

}  // namespace vksd

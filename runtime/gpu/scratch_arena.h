// ScratchArena: one device buffer for the intermediates of graphs that never run at the same
// time — a pipeline's text encoder, UNet and VAE run one after another, so their activation
// plans can all start at offset 0 of the same memory, sized to the largest, instead of each
// network holding its own arena between its runs.
//
// A graph given one (Graph::use_scratch) places only its temporaries here: they live within a
// single run(). Its inputs and kept outputs, which the host reads and writes between runs, stay
// in the graph's own buffer. run() holds the arena's lock from submit to the fence, so graphs of
// several threads sharing an arena take turns instead of overwriting each other.
//
// When a graph needs more than the arena holds, the arena is reallocated at the larger size
// (the old buffer is freed first, so the peak is the larger size, not both) and its generation
// changes; a graph recorded against an older generation re-records its command buffer (views,
// descriptors, dispatches; no pipeline work) before its next run.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <vulkan/vulkan.h>

namespace vksd {

class Buffer;
class Context;

class ScratchArena {
 public:
  explicit ScratchArena(Context& ctx);
  ~ScratchArena();
  ScratchArena(const ScratchArena&) = delete;
  ScratchArena& operator=(const ScratchArena&) = delete;

  VkDeviceSize size() const;  // bytes allocated now (0 before the first graph)

 private:
  friend class Graph;
  // With mutex_ held: make the buffer at least `bytes`; returns the generation.
  uint64_t reserve(VkDeviceSize bytes);
  VkBuffer buffer() const;

  Context& ctx_;
  std::mutex mutex_;
  std::unique_ptr<Buffer> buffer_;
  uint64_t generation_ = 0;
};

}  // namespace vksd

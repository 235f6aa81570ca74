// Graph: a network's forward pass as a list of kernel dispatches over tensors.
//
// Building a graph records nothing on the device: ops append Dispatches over Tensors (handles).
// compile() then
//   1. plans activation memory from each tensor's lifetime (one arena, tensors that are never
//      alive together share bytes; peak_bytes() reports its size),
//   2. creates the texel-buffer views and descriptor sets,
//   3. records ONE command buffer with exactly the barriers needed (a barrier only where a
//      dispatch touches bytes an earlier, unfenced dispatch wrote, or writes bytes it read),
// and run() resubmits that command buffer as often as you like. Inputs are written and outputs
// read between runs with upload()/download().
//
// A Graph made without a Context is shapes-only: ops compute their outputs' shapes and record
// nothing, so a network builder can run as a dry run (the checkpoint layout of a network,
// runtime/nn/blocks.h LayoutRecorder) where there is no Vulkan device at all. compile(), run(),
// upload() and download() are errors there.
#pragma once
#include <cstring>
#include <memory>
#include <string>
#include <vector>
#include <vulkan/vulkan.h>

#include "runtime/gpu/dtype.h"
#include "runtime/gpu/kernel.h"
#include "runtime/gpu/memory.h"

namespace vksd {

class Context;
class ScratchArena;
class Graph;
struct DeviceInfo;
struct DeviceProfile;

// A handle to a tensor of a Graph.
struct Tensor {
  Graph* g = nullptr;
  uint32_t id = 0;
  bool valid() const { return g != nullptr; }
  const Shape& shape() const;
  DType dtype() const;
  int64_t numel() const { return shape_numel(shape()); }
  int64_t dim(int i) const;  // negative counts from the end
  int rank() const { return (int)shape().size(); }
};

// One binding of a dispatch. `lanes` 4 binds a vec4 view (numel and offset multiples of 4).
struct Arg {
  Tensor t;
  Access access = Access::Read;
  int lanes = 1;
};
inline Arg in(Tensor t, int lanes = 1) { return {t, Access::Read, lanes}; }
inline Arg out(Tensor t, int lanes = 1) { return {t, Access::Write, lanes}; }

struct Dispatch {
  std::string kernel;          // shaders/<kernel>.comp
  std::vector<uint32_t> spec;  // specialization constants, constant_id 0..n-1
  std::vector<Arg> args;       // bindings 0..n-1
  std::vector<uint8_t> push;   // push-constant bytes (at most 128)
  uint32_t groups[3] = {1, 1, 1};
  std::string label;           // shown in profiles
  double flops = 0;            // for profiles/benchmarks (0 = not counted)
  // The network module it belongs to ("input_blocks.1.0 ResBlock"): Graph::add fills it from
  // Graph::set_scope when empty; profiles group dispatches by it.
  std::string scope;

  template <class T>
  void set_push(const T& p) {
    static_assert(sizeof(T) <= kPushConstantBytes);
    push.resize(sizeof(T));
    std::memcpy(push.data(), &p, sizeof(T));
  }
};

struct DispatchTiming {
  std::string label, kernel;
  double ms = 0;
  double flops = 0;
  std::string scope;  // Dispatch::scope
};

class Graph {
 public:
  explicit Graph(Context& ctx);
  Graph();  // shapes only: no device
  ~Graph();
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  bool shapes_only() const { return ctx_ == nullptr; }
  Context& context();  // an error on a shapes-only graph
  // What ops may ask of the device when choosing tiles: the Context's, or a neutral profile
  // (no vendor, generous limits) on a shapes-only graph.
  const DeviceInfo& device_info() const;
  // The kernel variants ops choose (device_profile.h): the Context's, or the neutral device's
  // on a shapes-only graph (no environment overrides).
  const DeviceProfile& profile() const;
  // Ops added from here on choose their variants for `p` instead of the Context's profile
  // (ops::check_matrix_unit runs the same ops under two profiles without touching the Context's).
  void use_profile(const DeviceProfile& p);

  // An input the host writes before run(); alive for the whole graph.
  Tensor input(const Shape& shape, DType dtype, const std::string& name = "");
  // Existing device memory (weights); never planned or freed by the graph.
  Tensor bind(const DeviceTensor& t, const std::string& name = "");
  // An intermediate; its memory is planned at compile().
  Tensor temp(const Shape& shape, DType dtype);
  // Keep `t` alive to the end of the graph so the host can read it after run().
  void keep(Tensor t);
  // The same bytes seen with another shape (a reshape; numel must match).
  Tensor view(Tensor t, const Shape& shape);

  void add(Dispatch d);
  // The module the dispatches added from now on belong to (Dispatch::scope); "" = none.
  void set_scope(std::string scope) { scope_ = std::move(scope); }
  const std::string& scope() const { return scope_; }

  // Place the temporaries in an arena shared with other graphs that never run at the same
  // time (scratch_arena.h); before compile(). Without one the graph has its own arena.
  void use_scratch(std::shared_ptr<ScratchArena> scratch);

  void compile(bool profile = false);
  void run();
  bool compiled() const { return cmd_ != VK_NULL_HANDLE; }

  void upload(Tensor t, const float* data);
  void upload(Tensor t, const std::vector<float>& data) { upload(t, data.data()); }
  void upload_i32(Tensor t, const int32_t* data);
  std::vector<float> download(Tensor t);
  DeviceTensor device_tensor(Tensor t) const;  // where it lives (after compile)

  // Activation memory this graph needs: its own arena (inputs, kept outputs, and the
  // temporaries unless they are in a scratch arena) + its temporaries' plan in the scratch.
  VkDeviceSize peak_bytes() const { return peak_; }
  VkDeviceSize scratch_bytes() const { return scratch_bytes_; }  // of that, in the scratch arena
  size_t dispatch_count() const { return nodes_.size(); }
  const std::vector<Dispatch>& dispatches() const { return nodes_; }  // in order (tests, profiles)
  double flops() const;  // sum of the dispatches' Dispatch::flops (floating-point ops per run)
  size_t barrier_count() const { return barriers_; }
  std::vector<DispatchTiming> timings() const;              // last run, when compiled with profile
  // Whether compile() created timestamp queries (profile requested and the device has them);
  // false = no query pool, no extra barriers: profiling off costs nothing.
  bool profiled() const { return queries_ != VK_NULL_HANDLE; }

  // Internal description of a tensor (public for the Tensor handle).
  struct TensorInfo {
    Shape shape;
    DType dtype;
    enum class Kind { Temp, Input, Bound, View } kind;
    DeviceTensor bound;    // Bound
    uint32_t base = 0;     // View: the tensor whose bytes it shares
    bool keep = false;
    std::string name;
  };
  const TensorInfo& info(uint32_t id) const { return tensors_[id]; }

 private:
  uint32_t root(uint32_t id) const;
  VkBufferView view_for(const DeviceTensor& t, int lanes, Access access);
  // Views, descriptor sets and the command buffer from placed_: at compile(), and again when
  // the scratch arena has moved. record() drops what an earlier recording made.
  void record();
  // With the scratch arena's lock held: make it hold this graph's temporaries, point them at
  // its buffer, and re-record if it moved since this graph last recorded.
  void bind_scratch();

  Context* ctx_ = nullptr;
  std::vector<TensorInfo> tensors_;
  std::vector<Dispatch> nodes_;
  std::vector<DeviceTensor> placed_;  // per tensor id, after compile
  std::unique_ptr<Buffer> arena_;
  VkDeviceSize peak_ = 0;
  std::shared_ptr<ScratchArena> scratch_;
  uint64_t scratch_generation_ = 0;  // of the arena's buffer the command buffer refers to
  VkDeviceSize scratch_bytes_ = 0;   // this graph's temporaries' plan in it
  std::vector<std::pair<uint32_t, VkDeviceSize>> scratch_items_;  // tensor id, offset in it
  size_t barriers_ = 0;
  VkDescriptorPool pool_ = VK_NULL_HANDLE;
  std::vector<VkBufferView> views_;
  std::vector<std::tuple<VkBuffer, VkDeviceSize, VkDeviceSize, VkFormat, VkBufferView>> view_cache_;
  VkCommandPool cmd_pool_ = VK_NULL_HANDLE;
  VkCommandBuffer cmd_ = VK_NULL_HANDLE;
  VkFence fence_ = VK_NULL_HANDLE;
  VkQueryPool queries_ = VK_NULL_HANDLE;
  std::string scope_;
  std::unique_ptr<DeviceProfile> profile_;  // use_profile's, else the Context's
};

}  // namespace vksd

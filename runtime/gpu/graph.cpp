#include "runtime/gpu/graph.h"

#include <algorithm>

#include "runtime/gpu/context.h"
#include "runtime/error.h"
#include "runtime/gpu/device_hint.h"
#include "runtime/gpu/fault_inject.h"
#include "runtime/gpu/scratch_arena.h"

namespace vksd {

const Shape& Tensor::shape() const { return g->info(id).shape; }
DType Tensor::dtype() const { return g->info(id).dtype; }
int64_t Tensor::dim(int i) const {
  const Shape& s = shape();
  int n = (int)s.size();
  if (i < 0) i += n;
  if (i < 0 || i >= n) fail("tensor dim " + std::to_string(i) + " out of range for shape " + shape_str(s));
  return s[i];
}

Graph::Graph(Context& ctx) : ctx_(&ctx) {}
Graph::Graph() = default;

Context& Graph::context() {
  if (!ctx_) fail("a shapes-only Graph has no device");
  return *ctx_;
}

const DeviceInfo& Graph::device_info() const {
  static const DeviceInfo neutral = [] {
    DeviceInfo d;
    d.name = d.type = "shapes only";
    d.max_storage_buffer_range = d.max_memory_allocation = d.max_buffer_size = UINT64_MAX;
    d.max_texel_buffer_elements = UINT64_MAX;
    d.max_push_constants = kPushConstantBytes;
    d.max_shared_memory = 32768;
    d.max_workgroup_invocations = 1024;
    d.max_workgroup_count[0] = d.max_workgroup_count[1] = d.max_workgroup_count[2] = UINT32_MAX;
    d.subgroup_size = 32;
    d.fp16 = true;
    return d;
  }();
  return ctx_ ? ctx_->info() : neutral;
}

const DeviceProfile& Graph::profile() const {
  if (profile_) return *profile_;
  if (ctx_) return ctx_->profile();
  static const DeviceProfile neutral = DeviceProfile::choose(device_info(), [](const char*) -> const char* { return nullptr; });
  return neutral;
}

void Graph::use_profile(const DeviceProfile& p) { profile_ = std::make_unique<DeviceProfile>(p); }

Graph::~Graph() {
  if (!ctx_) return;
  VkDevice dev = ctx_->device();
  // run() waits for its own fence before returning, so nothing of this graph is in flight
  // here: no queue-wide wait (which would stall, and race with, other threads' work).
  if (cmd_pool_) vkDestroyCommandPool(dev, cmd_pool_, nullptr);
  if (fence_) vkDestroyFence(dev, fence_, nullptr);
  if (queries_) vkDestroyQueryPool(dev, queries_, nullptr);
  for (auto v : views_) vkDestroyBufferView(dev, v, nullptr);
  if (pool_) vkDestroyDescriptorPool(dev, pool_, nullptr);
}

Tensor Graph::input(const Shape& shape, DType dtype, const std::string& name) {
  tensors_.push_back({shape, dtype, TensorInfo::Kind::Input, {}, 0, true, name});
  return {this, (uint32_t)tensors_.size() - 1};
}

Tensor Graph::bind(const DeviceTensor& t, const std::string& name) {
  if (!t.valid()) fail("Graph::bind: tensor '" + name + "' has no device memory");
  tensors_.push_back({t.shape, t.dtype, TensorInfo::Kind::Bound, t, 0, false, name});
  return {this, (uint32_t)tensors_.size() - 1};
}

Tensor Graph::temp(const Shape& shape, DType dtype) {
  for (auto d : shape)
    if (d <= 0) fail("tensor shape " + shape_str(shape) + " has a non-positive dimension");
  tensors_.push_back({shape, dtype, TensorInfo::Kind::Temp, {}, 0, false, ""});
  return {this, (uint32_t)tensors_.size() - 1};
}

void Graph::keep(Tensor t) { tensors_[root(t.id)].keep = true; }

Tensor Graph::view(Tensor t, const Shape& shape) {
  if (shape_numel(shape) != t.numel())
    fail("cannot view " + shape_str(t.shape()) + " as " + shape_str(shape) + ": element counts differ");
  tensors_.push_back({shape, t.dtype(), TensorInfo::Kind::View, {}, root(t.id), false, ""});
  return {this, (uint32_t)tensors_.size() - 1};
}

uint32_t Graph::root(uint32_t id) const {
  while (tensors_[id].kind == TensorInfo::Kind::View) id = tensors_[id].base;
  return id;
}

void Graph::add(Dispatch d) {
  if (compiled()) fail("Graph::add after compile()");
  if (d.push.size() > kPushConstantBytes) fail(d.kernel + ": push constants exceed 128 bytes");
  for (auto& a : d.args)
    if (a.t.g != this) fail(d.kernel + ": argument tensor belongs to another graph");
  if (!ctx_) return;  // shapes only: the output tensors exist, nothing is recorded
  const auto& lim = ctx_->info().max_workgroup_count;
  for (int i = 0; i < 3; ++i)
    if (d.groups[i] == 0 || d.groups[i] > lim[i])
      fail(d.kernel + ": dispatch of " + std::to_string(d.groups[i]) + " workgroups in dimension " +
           std::to_string(i) + " is outside the device limit " + std::to_string(lim[i]) + kDeviceLimitHint);
  if (d.label.empty()) d.label = d.kernel;
  if (d.scope.empty()) d.scope = scope_;
  nodes_.push_back(std::move(d));
}

static VkFormat view_format(DType dt, int lanes) {
  switch (dt) {
    case DType::F32: return lanes == 4 ? VK_FORMAT_R32G32B32A32_SFLOAT : VK_FORMAT_R32_SFLOAT;
    case DType::F16: return lanes == 4 ? VK_FORMAT_R16G16B16A16_SFLOAT : VK_FORMAT_R16_SFLOAT;
    case DType::I32: return lanes == 4 ? VK_FORMAT_R32G32B32A32_SINT : VK_FORMAT_R32_SINT;
  }
  return VK_FORMAT_UNDEFINED;
}

VkBufferView Graph::view_for(const DeviceTensor& t, int lanes, Access access) {
  VkFormat fmt = view_format(t.dtype, lanes);
  VkDeviceSize range = t.bytes();
  if (lanes != 1 && t.numel() % lanes)
    fail("a " + std::to_string(lanes) + "-lane view needs a multiple of " + std::to_string(lanes) +
         " elements; tensor " + shape_str(t.shape) + " has " + std::to_string(t.numel()));
  if ((uint64_t)(t.numel() / lanes) > ctx_->info().max_texel_buffer_elements)
    fail("tensor " + shape_str(t.shape) + " has more texels than this device's maxTexelBufferElements (" +
         std::to_string(ctx_->info().max_texel_buffer_elements) + ")" + kDeviceLimitHint);
  (void)access;  // one view serves both uniform and storage texel descriptors
  for (auto& [b, o, r, f, v] : view_cache_)
    if (b == t.buffer && o == t.offset && r == range && f == fmt) return v;
  VkBufferViewCreateInfo ci{VK_STRUCTURE_TYPE_BUFFER_VIEW_CREATE_INFO};
  ci.buffer = t.buffer;
  ci.format = fmt;
  ci.offset = t.offset;
  ci.range = range;
  VkBufferView v;
  vk_check(vkCreateBufferView(ctx_->device(), &ci, nullptr, &v), "vkCreateBufferView");
  views_.push_back(v);
  view_cache_.emplace_back(t.buffer, t.offset, range, fmt, v);
  return v;
}

DeviceTensor Graph::device_tensor(Tensor t) const {
  if (!compiled()) fail("Graph::device_tensor before compile()");
  DeviceTensor d = placed_[root(t.id)];
  if (!d.valid()) fail("tensor is never used by the graph and has no memory");
  d.shape = t.shape();
  d.dtype = t.dtype();
  return d;
}

void Graph::use_scratch(std::shared_ptr<ScratchArena> scratch) {
  if (compiled()) fail("Graph::use_scratch after compile()");
  scratch_ = std::move(scratch);
}

void Graph::compile(bool profile) {
  if (compiled()) fail("Graph::compile called twice");
  VkDevice dev = context().device();
  const int n = (int)nodes_.size();

  // 1. lifetimes and the activation plan: inputs and kept tensors for the whole graph,
  // temporaries from their first to their last dispatch (in the scratch arena when given one).
  std::vector<int> first(tensors_.size(), INT32_MAX), last(tensors_.size(), -1);
  for (int i = 0; i < n; ++i)
    for (auto& a : nodes_[i].args) {
      uint32_t r = root(a.t.id);
      first[r] = std::min(first[r], i);
      last[r] = std::max(last[r], i);
    }
  std::vector<PlanItem> own, temps;
  std::vector<uint32_t> own_tensor, temp_tensor;
  for (uint32_t id = 0; id < tensors_.size(); ++id) {
    const auto& ti = tensors_[id];
    if (ti.kind == TensorInfo::Kind::View || ti.kind == TensorInfo::Kind::Bound) continue;
    bool pinned = ti.kind == TensorInfo::Kind::Input || ti.keep;
    if (!pinned && last[id] < 0) continue;  // never used
    PlanItem it;
    it.bytes = align_up((VkDeviceSize)shape_numel(ti.shape) * dtype_size(ti.dtype), 16);
    it.first = pinned ? 0 : first[id];
    it.last = pinned ? n : last[id];
    const bool shared = scratch_ && !pinned;
    (shared ? temps : own).push_back(it);
    (shared ? temp_tensor : own_tensor).push_back(id);
  }
  const VkDeviceSize own_bytes = plan_offsets(own);
  scratch_bytes_ = temps.empty() ? 0 : plan_offsets(temps);
  peak_ = own_bytes + scratch_bytes_;
  arena_ = std::make_unique<Buffer>(*ctx_, std::max<VkDeviceSize>(own_bytes, 256), Buffer::Use::Device, "activations");
  placed_.assign(tensors_.size(), DeviceTensor{});
  for (size_t k = 0; k < own.size(); ++k) {
    auto& ti = tensors_[own_tensor[k]];
    placed_[own_tensor[k]] = {arena_->handle(), own[k].offset, ti.shape, ti.dtype};
  }
  scratch_items_.clear();
  for (size_t k = 0; k < temps.size(); ++k) scratch_items_.emplace_back(temp_tensor[k], temps[k].offset);
  for (uint32_t id = 0; id < tensors_.size(); ++id)
    if (tensors_[id].kind == TensorInfo::Kind::Bound) placed_[id] = tensors_[id].bound;

  // 2. every pipeline the graph needs, created in parallel (most of a network's compile time)
  {
    std::vector<KernelKey> keys;
    keys.reserve(nodes_.size());
    for (auto& d : nodes_) {
      std::vector<Access> kinds;
      for (auto& a : d.args) kinds.push_back(a.access);
      keys.emplace_back(d.kernel, d.spec, std::move(kinds));
    }
    ctx_->kernels().prepare(keys);
  }

  // 3. what lasts across recordings: the command buffer, the fence, timestamp queries
  VkCommandPoolCreateInfo cpi{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
  cpi.queueFamilyIndex = ctx_->queue_family();
  vk_check(vkCreateCommandPool(dev, &cpi, nullptr, &cmd_pool_), "vkCreateCommandPool");
  VkCommandBufferAllocateInfo ai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
  ai.commandPool = cmd_pool_;
  ai.commandBufferCount = 1;
  VkCommandBuffer cmd = VK_NULL_HANDLE;  // cmd_ is set once recorded: compiled() means runnable
  vk_check(vkAllocateCommandBuffers(dev, &ai, &cmd), "vkAllocateCommandBuffers");
  VkFenceCreateInfo fci{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  vk_check(vkCreateFence(dev, &fci, nullptr, &fence_), "vkCreateFence");
  if (profile && ctx_->info().timestamps) {
    VkQueryPoolCreateInfo q{VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO};
    q.queryType = VK_QUERY_TYPE_TIMESTAMP;
    q.queryCount = (uint32_t)n + 1;
    vk_check(vkCreateQueryPool(dev, &q, nullptr, &queries_), "vkCreateQueryPool");
  }

  // 4. record (with the scratch arena's lock held: placing the temporaries may reallocate it)
  std::unique_lock<std::mutex> lock;
  if (scratch_) lock = std::unique_lock<std::mutex>(scratch_->mutex_);
  cmd_ = cmd;
  if (scratch_) {
    scratch_generation_ = 0;  // never a real generation: bind_scratch records
    bind_scratch();
  } else {
    record();
  }
}

void Graph::bind_scratch() {
  const uint64_t gen = scratch_->reserve(scratch_bytes_);
  if (gen == scratch_generation_) return;
  for (auto [id, offset] : scratch_items_) {
    auto& ti = tensors_[id];
    placed_[id] = {scratch_->buffer(), offset, ti.shape, ti.dtype};
  }
  scratch_generation_ = gen;
  record();
}

void Graph::record() {
  VkDevice dev = ctx_->device();
  const int n = (int)nodes_.size();
  // What an earlier recording made (the arena it referred to has moved).
  vk_check(vkResetCommandPool(dev, cmd_pool_, 0), "vkResetCommandPool");
  for (auto v : views_) vkDestroyBufferView(dev, v, nullptr);
  views_.clear();
  view_cache_.clear();
  if (pool_) vkDestroyDescriptorPool(dev, pool_, nullptr);
  pool_ = VK_NULL_HANDLE;

  uint32_t reads = 0, writes = 0;
  for (auto& d : nodes_)
    for (auto& a : d.args) (a.access == Access::Read ? reads : writes)++;
  std::vector<VkDescriptorPoolSize> sizes;
  if (reads) sizes.push_back({VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER, reads});
  if (writes) sizes.push_back({VK_DESCRIPTOR_TYPE_STORAGE_TEXEL_BUFFER, writes});
  VkDescriptorPoolCreateInfo pci{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
  pci.maxSets = std::max(n, 1);
  pci.poolSizeCount = (uint32_t)sizes.size();
  pci.pPoolSizes = sizes.data();
  if (n) vk_check(vkCreateDescriptorPool(dev, &pci, nullptr, &pool_), "vkCreateDescriptorPool");

  VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  vk_check(vkBeginCommandBuffer(cmd_, &bi), "vkBeginCommandBuffer");
  auto barrier = [&](VkAccessFlags src, VkPipelineStageFlags src_stage, VkAccessFlags dst, VkPipelineStageFlags dst_stage) {
    VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
    mb.srcAccessMask = src;
    mb.dstAccessMask = dst;
    vkCmdPipelineBarrier(cmd_, src_stage, dst_stage, 0, 1, &mb, 0, nullptr, 0, nullptr);
  };
  constexpr VkAccessFlags kRW = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT;
  constexpr VkAccessFlags kAll = kRW | VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
  constexpr VkPipelineStageFlags kCS = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT;
  constexpr VkPipelineStageFlags kAny = kCS | VK_PIPELINE_STAGE_TRANSFER_BIT;
  // Against whatever ran before this submission (uploads, the previous run of this graph, and
  // other graphs' use of a shared scratch arena).
  barrier(kAll, kAny, kRW, kCS);
  if (queries_) {
    vkCmdResetQueryPool(cmd_, queries_, 0, (uint32_t)n + 1);
    vkCmdWriteTimestamp(cmd_, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, queries_, 0);
  }

  struct Range { VkBuffer b; VkDeviceSize lo, hi; };
  std::vector<Range> pending_writes, pending_reads;
  auto overlaps = [](const std::vector<Range>& v, const Range& r) {
    for (auto& x : v)
      if (x.b == r.b && x.lo < r.hi && r.lo < x.hi) return true;
    return false;
  };
  barriers_ = 0;
  for (int i = 0; i < n; ++i) {
    auto& d = nodes_[i];
    std::vector<Access> kinds;
    std::vector<Range> rs, ws;
    std::vector<VkBufferView> views;
    for (auto& a : d.args) {
      DeviceTensor t = placed_[root(a.t.id)];
      if (!t.valid()) fail(d.label + ": argument has no memory");
      t.shape = a.t.shape();
      t.dtype = a.t.dtype();
      kinds.push_back(a.access);
      views.push_back(view_for(t, a.lanes, a.access));
      Range r{t.buffer, t.offset, t.offset + t.bytes()};
      (a.access == Access::Read ? rs : ws).push_back(r);
    }
    bool hazard = false;
    for (auto& r : rs) hazard = hazard || overlaps(pending_writes, r);
    for (auto& w : ws) hazard = hazard || overlaps(pending_writes, w) || overlaps(pending_reads, w);
    // Profiling serialises every dispatch so each timestamp pair measures one kernel alone.
    if (hazard || (queries_ && i > 0)) {
      barrier(kRW, kCS, kRW, kCS);
      barriers_++;
      pending_writes.clear();
      pending_reads.clear();
    }
    pending_reads.insert(pending_reads.end(), rs.begin(), rs.end());
    pending_writes.insert(pending_writes.end(), ws.begin(), ws.end());

    const Pipeline& p = ctx_->kernels().get(d.kernel, d.spec, kinds);
    VkDescriptorSetAllocateInfo dai{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
    dai.descriptorPool = pool_;
    dai.descriptorSetCount = 1;
    dai.pSetLayouts = &p.set_layout;
    VkDescriptorSet set;
    vk_check(vkAllocateDescriptorSets(dev, &dai, &set), "vkAllocateDescriptorSets");
    std::vector<VkWriteDescriptorSet> w(d.args.size());
    for (uint32_t k = 0; k < d.args.size(); ++k) {
      w[k] = {VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET};
      w[k].dstSet = set;
      w[k].dstBinding = k;
      w[k].descriptorCount = 1;
      w[k].descriptorType = kinds[k] == Access::Read ? VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER
                                                     : VK_DESCRIPTOR_TYPE_STORAGE_TEXEL_BUFFER;
      w[k].pTexelBufferView = &views[k];
    }
    vkUpdateDescriptorSets(dev, (uint32_t)w.size(), w.data(), 0, nullptr);
    vkCmdBindPipeline(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, p.pipeline);
    vkCmdBindDescriptorSets(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, p.layout, 0, 1, &set, 0, nullptr);
    std::vector<uint8_t> push(kPushConstantBytes, 0);
    std::copy(d.push.begin(), d.push.end(), push.begin());
    vkCmdPushConstants(cmd_, p.layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, kPushConstantBytes, push.data());
    vkCmdDispatch(cmd_, d.groups[0], d.groups[1], d.groups[2]);
    if (queries_) vkCmdWriteTimestamp(cmd_, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, queries_, (uint32_t)i + 1);
  }
  // Make the results visible to later copies (downloads) and to the next run.
  barrier(kRW, kCS, kAll, kAny);
  vk_check(vkEndCommandBuffer(cmd_), "vkEndCommandBuffer");
}

void Graph::run() {
  if (!compiled()) compile();  // fails on a shapes-only graph
  std::unique_lock<std::mutex> lock;  // held to the fence: no other graph uses the scratch meanwhile
  if (scratch_) {
    lock = std::unique_lock<std::mutex>(scratch_->mutex_);
    bind_scratch();
  }
  VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
  si.commandBufferCount = 1;
  si.pCommandBuffers = &cmd_;
  ctx_->submit(si, fence_);
  VkResult r = vkWaitForFences(ctx_->device(), 1, &fence_, VK_TRUE, UINT64_MAX);
  if (r == VK_SUCCESS) r = injected_fault(FaultSite::Graph);  // a test may force a failure
  if (r != VK_SUCCESS)  // name the work that was running: its first kernels
    fail("running a graph of " + std::to_string(nodes_.size()) + " dispatches (" +
         (nodes_.empty() ? std::string("empty") : nodes_.front().label + ", ...") + ") failed: " + vk_result_name(r) +
         vk_result_advice(r));
  vkResetFences(ctx_->device(), 1, &fence_);
}

double Graph::flops() const {
  double f = 0;
  for (auto& d : nodes_) f += d.flops;
  return f;
}

std::vector<DispatchTiming> Graph::timings() const {
  std::vector<DispatchTiming> out;
  if (!queries_) return out;
  std::vector<uint64_t> ts(nodes_.size() + 1);
  vk_check(vkGetQueryPoolResults(ctx_->device(), queries_, 0, (uint32_t)ts.size(), ts.size() * 8, ts.data(), 8,
                                 VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT),
           "vkGetQueryPoolResults");
  double period = ctx_->info().timestamp_period_ns;
  for (size_t i = 0; i < nodes_.size(); ++i)
    out.push_back({nodes_[i].label, nodes_[i].kernel, (double)(ts[i + 1] - ts[i]) * period * 1e-6, nodes_[i].flops,
                   nodes_[i].scope});
  return out;
}

void Graph::upload(Tensor t, const float* data) { vksd::upload(context(), device_tensor(t), data); }
void Graph::upload_i32(Tensor t, const int32_t* data) { vksd::upload_i32(context(), device_tensor(t), data); }
std::vector<float> Graph::download(Tensor t) { return vksd::download(context(), device_tensor(t)); }

}  // namespace vksd

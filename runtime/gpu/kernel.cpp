#include "runtime/gpu/kernel.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "runtime/gpu/context.h"
#include "runtime/error.h"

namespace vksd {

static void destroy_pipeline(VkDevice dev, const Pipeline& p) {
  if (p.pipeline) vkDestroyPipeline(dev, p.pipeline, nullptr);
  vkDestroyPipelineLayout(dev, p.layout, nullptr);
  vkDestroyDescriptorSetLayout(dev, p.set_layout, nullptr);
}

static std::string default_cache_dir() {
  if (const char* x = std::getenv("XDG_CACHE_HOME")) return std::string(x) + "/vksd";
  if (const char* h = std::getenv("HOME")) return std::string(h) + "/.cache/vksd";
  return "";
}

Kernels::Kernels(Context& ctx) : ctx_(ctx) {
  std::string dir = ctx.options().pipeline_cache_dir.empty() ? default_cache_dir() : ctx.options().pipeline_cache_dir;
  std::vector<char> blob;
  if (!dir.empty()) {
    cache_path_ = dir + "/pipelines-" + std::to_string(ctx.info().index) + ".bin";
    std::ifstream f(cache_path_, std::ios::binary);
    if (f) blob.assign(std::istreambuf_iterator<char>(f), {});
  }
  VkPipelineCacheCreateInfo ci{VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO};
  ci.initialDataSize = blob.size();
  ci.pInitialData = blob.empty() ? nullptr : blob.data();
  // A stale or foreign blob is ignored by the driver (it checks the header); start empty then.
  if (vkCreatePipelineCache(ctx.device(), &ci, nullptr, &cache_handle_) != VK_SUCCESS) {
    ci.initialDataSize = 0;
    ci.pInitialData = nullptr;
    vk_check(vkCreatePipelineCache(ctx.device(), &ci, nullptr, &cache_handle_), "vkCreatePipelineCache");
  }
}

Kernels::~Kernels() {
  VkDevice dev = ctx_.device();
  if (!cache_path_.empty() && !cache_.empty()) {
    size_t n = 0;
    if (vkGetPipelineCacheData(dev, cache_handle_, &n, nullptr) == VK_SUCCESS && n) {
      std::vector<char> blob(n);
      if (vkGetPipelineCacheData(dev, cache_handle_, &n, blob.data()) == VK_SUCCESS) {
        std::error_code ec;
        std::filesystem::create_directories(std::filesystem::path(cache_path_).parent_path(), ec);
        std::string tmp = cache_path_ + ".tmp" + std::to_string(::getpid());
        std::ofstream f(tmp, std::ios::binary);
        if (f.write(blob.data(), (std::streamsize)n)) {
          f.close();
          std::filesystem::rename(tmp, cache_path_, ec);
        } else {
          std::filesystem::remove(tmp, ec);
        }
      }
    }
  }
  for (auto& [key, p] : cache_) destroy_pipeline(dev, p);
  vkDestroyPipelineCache(dev, cache_handle_, nullptr);
}

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

size_t Kernels::pipeline_count() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return cache_.size();
}

KernelStats Kernels::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

const Pipeline& Kernels::get(const std::string& name, const std::vector<uint32_t>& spec,
                             const std::vector<Access>& bindings) {
  auto key = std::make_tuple(name, spec, bindings);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second;
  }
  const auto t0 = std::chrono::steady_clock::now();
  Pipeline p = create(key);
  std::lock_guard<std::mutex> lock(mutex_);
  const double dt = seconds_since(t0);
  stats_.create_seconds += dt;
  auto [it, added] = cache_.emplace(key, p);
  if (added) {
    stats_.pipelines++;
    auto& s = stats_.by_shader[name];
    s.first++;
    s.second += dt;
  }
  else destroy_pipeline(ctx_.device(), p);  // another thread made it meanwhile
  return it->second;
}

void Kernels::prepare(const std::vector<KernelKey>& keys) {
  std::vector<KernelKey> todo;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    std::set<KernelKey> seen;
    for (const auto& k : keys)
      if (!cache_.count(k) && seen.insert(k).second) todo.push_back(k);
  }
  if (todo.empty()) return;
  const auto t0 = std::chrono::steady_clock::now();
  // VKSD_PIPELINE_THREADS=N (the device profile) caps the threads (1 = one after another).
  size_t cap = std::max(1u, std::thread::hardware_concurrency());
  if (ctx_.profile().pipeline_threads) cap = ctx_.profile().pipeline_threads;
  const size_t threads = std::min(todo.size(), cap);
  std::atomic<size_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < todo.size();) {
      try {
        get(std::get<0>(todo[i]), std::get<1>(todo[i]), std::get<2>(todo[i]));
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
      }
    }
  };
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.prepare_seconds += seconds_since(t0);
  }
  if (error) std::rethrow_exception(error);
}

Pipeline Kernels::create(const KernelKey& key) const {
  const auto& [name, spec, bindings] = key;
  auto code = find_shader(name);
  if (code.empty()) fail("no embedded shader named '" + name + "'");
  VkDevice dev = ctx_.device();
  Pipeline p;

  std::vector<VkDescriptorSetLayoutBinding> lb(bindings.size());
  for (uint32_t i = 0; i < bindings.size(); ++i) {
    lb[i].binding = i;
    lb[i].descriptorType = bindings[i] == Access::Read ? VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER
                                                       : VK_DESCRIPTOR_TYPE_STORAGE_TEXEL_BUFFER;
    lb[i].descriptorCount = 1;
    lb[i].stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
  }
  VkDescriptorSetLayoutCreateInfo dl{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO};
  dl.bindingCount = (uint32_t)lb.size();
  dl.pBindings = lb.data();
  vk_check(vkCreateDescriptorSetLayout(dev, &dl, nullptr, &p.set_layout), "vkCreateDescriptorSetLayout");

  VkPushConstantRange pcr{VK_SHADER_STAGE_COMPUTE_BIT, 0, kPushConstantBytes};
  VkPipelineLayoutCreateInfo pl{VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO};
  pl.setLayoutCount = 1;
  pl.pSetLayouts = &p.set_layout;
  pl.pushConstantRangeCount = 1;
  pl.pPushConstantRanges = &pcr;
  vk_check(vkCreatePipelineLayout(dev, &pl, nullptr, &p.layout), "vkCreatePipelineLayout");

  VkShaderModuleCreateInfo sm{VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO};
  sm.codeSize = code.size() * 4;
  sm.pCode = code.data();
  VkShaderModule module;
  vk_check(vkCreateShaderModule(dev, &sm, nullptr, &module), "vkCreateShaderModule");

  std::vector<VkSpecializationMapEntry> entries(spec.size());
  for (uint32_t i = 0; i < spec.size(); ++i) entries[i] = {i, i * 4, 4};
  VkSpecializationInfo si{(uint32_t)entries.size(), entries.data(), spec.size() * 4, spec.data()};

  VkComputePipelineCreateInfo cp{VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO};
  cp.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
  cp.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
  cp.stage.module = module;
  cp.stage.pName = "main";
  cp.stage.pSpecializationInfo = spec.empty() ? nullptr : &si;
  cp.layout = p.layout;
  VkResult r = vkCreateComputePipelines(dev, cache_handle_, 1, &cp, nullptr, &p.pipeline);
  vkDestroyShaderModule(dev, module, nullptr);
  if (r != VK_SUCCESS) destroy_pipeline(dev, p);
  vk_check(r, ("vkCreateComputePipelines(" + name + ")").c_str());
  return p;
}

}  // namespace vksd

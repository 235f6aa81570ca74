#include "viewer/imgui_renderer.h"

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "runtime/gpu/context.h"
#include "runtime/error.h"

namespace vksd::view {

// SPIR-V of viewer/shaders/imgui.{vert,frag}, compiled by glslc at build time (CMakeLists.txt).
static const uint32_t kVertSpv[] = {
#include "imgui.vert.inc"
};
static const uint32_t kFragSpv[] = {
#include "imgui.frag.inc"
};

namespace {
constexpr uint32_t kSetsPerPool = 64;

struct PushConstants {
  float scale[2];
  float translate[2];
};

VkShaderModule make_module(VkDevice dev, const uint32_t* words, size_t bytes) {
  VkShaderModuleCreateInfo ci{VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO};
  ci.codeSize = bytes;
  ci.pCode = words;
  VkShaderModule m;
  vk_check(vkCreateShaderModule(dev, &ci, nullptr, &m), "vkCreateShaderModule (imgui)");
  return m;
}

VkSampler make_sampler(VkDevice dev, VkFilter filter) {
  VkSamplerCreateInfo ci{VK_STRUCTURE_TYPE_SAMPLER_CREATE_INFO};
  ci.magFilter = filter;
  ci.minFilter = filter;
  ci.mipmapMode = VK_SAMPLER_MIPMAP_MODE_NEAREST;
  ci.addressModeU = ci.addressModeV = ci.addressModeW = VK_SAMPLER_ADDRESS_MODE_CLAMP_TO_EDGE;
  ci.maxLod = 0.0f;
  VkSampler s;
  vk_check(vkCreateSampler(dev, &ci, nullptr, &s), "vkCreateSampler (imgui)");
  return s;
}
}  // namespace

ImGuiRenderer::ImGuiRenderer(Context& ctx, VkRenderPass rp, int frames_in_flight) : ctx_(ctx) {
  if (!ImGui::GetCurrentContext()) fail("ImGuiRenderer: call ImGui::CreateContext() first");
  if (frames_in_flight < 1) fail("ImGuiRenderer: frames_in_flight must be >= 1");
  VkDevice dev = ctx.device();
  try {
    nearest_ = make_sampler(dev, VK_FILTER_NEAREST);
    linear_ = make_sampler(dev, VK_FILTER_LINEAR);

    VkDescriptorSetLayoutBinding binding{};
    binding.binding = 0;
    binding.descriptorType = VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER;
    binding.descriptorCount = 1;
    binding.stageFlags = VK_SHADER_STAGE_FRAGMENT_BIT;
    VkDescriptorSetLayoutCreateInfo lci{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO};
    lci.bindingCount = 1;
    lci.pBindings = &binding;
    vk_check(vkCreateDescriptorSetLayout(dev, &lci, nullptr, &set_layout_), "vkCreateDescriptorSetLayout (imgui)");

    VkPushConstantRange pcr{VK_SHADER_STAGE_VERTEX_BIT, 0, sizeof(PushConstants)};
    VkPipelineLayoutCreateInfo plci{VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO};
    plci.setLayoutCount = 1;
    plci.pSetLayouts = &set_layout_;
    plci.pushConstantRangeCount = 1;
    plci.pPushConstantRanges = &pcr;
    vk_check(vkCreatePipelineLayout(dev, &plci, nullptr, &pipeline_layout_), "vkCreatePipelineLayout (imgui)");

    create_pipeline(rp);
    frames_.resize((size_t)frames_in_flight);
    create_font_texture();
  } catch (...) {
    release();  // whatever was created (every member is null-checked)
    throw;
  }
  ImGuiIO& io = ImGui::GetIO();
  io.BackendRendererName = "vksd_vulkan";
  io.BackendFlags |= ImGuiBackendFlags_RendererHasVtxOffset;  // large meshes with 16-bit indices
}

ImGuiRenderer::~ImGuiRenderer() { release(); }

void ImGuiRenderer::release() {
  VkDevice dev = ctx_.device();
  if (ImGui::GetCurrentContext()) {
    ImGuiIO& io = ImGui::GetIO();
    if (font_set_ && io.Fonts->TexID == to_texture_id(font_set_)) io.Fonts->SetTexID(nullptr);
    if (io.BackendRendererName && std::strcmp(io.BackendRendererName, "vksd_vulkan") == 0) {
      io.BackendRendererName = nullptr;
      io.BackendFlags &= ~ImGuiBackendFlags_RendererHasVtxOffset;
    }
  }
  for (auto& f : frames_) {
    destroy_buffer(ctx_, f.vertices);
    destroy_buffer(ctx_, f.indices);
  }
  frames_.clear();
  destroy_image(ctx_, font_);
  sets_.clear();
  font_set_ = VK_NULL_HANDLE;
  for (VkDescriptorPool p : pools_) vkDestroyDescriptorPool(dev, p, nullptr);  // frees their sets
  pools_.clear();
  if (pipeline_) vkDestroyPipeline(dev, pipeline_, nullptr);
  if (pipeline_layout_) vkDestroyPipelineLayout(dev, pipeline_layout_, nullptr);
  if (set_layout_) vkDestroyDescriptorSetLayout(dev, set_layout_, nullptr);
  if (nearest_) vkDestroySampler(dev, nearest_, nullptr);
  if (linear_) vkDestroySampler(dev, linear_, nullptr);
  pipeline_ = VK_NULL_HANDLE;
  pipeline_layout_ = VK_NULL_HANDLE;
  set_layout_ = VK_NULL_HANDLE;
  nearest_ = linear_ = VK_NULL_HANDLE;
  ctx_.track_memory("preview", -tracked_bytes_);
  tracked_bytes_ = 0;
}

void ImGuiRenderer::create_pipeline(VkRenderPass rp) {
  VkDevice dev = ctx_.device();
  VkShaderModule vs = make_module(dev, kVertSpv, sizeof(kVertSpv));
  VkShaderModule fs = VK_NULL_HANDLE;
  try {
    fs = make_module(dev, kFragSpv, sizeof(kFragSpv));
  } catch (...) {
    vkDestroyShaderModule(dev, vs, nullptr);
    throw;
  }
  VkPipelineShaderStageCreateInfo stages[2] = {{VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO},
                                               {VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO}};
  stages[0].stage = VK_SHADER_STAGE_VERTEX_BIT;
  stages[0].module = vs;
  stages[0].pName = "main";
  stages[1].stage = VK_SHADER_STAGE_FRAGMENT_BIT;
  stages[1].module = fs;
  stages[1].pName = "main";

  VkVertexInputBindingDescription vb{0, sizeof(ImDrawVert), VK_VERTEX_INPUT_RATE_VERTEX};
  VkVertexInputAttributeDescription attrs[3] = {
      {0, 0, VK_FORMAT_R32G32_SFLOAT, (uint32_t)offsetof(ImDrawVert, pos)},
      {1, 0, VK_FORMAT_R32G32_SFLOAT, (uint32_t)offsetof(ImDrawVert, uv)},
      {2, 0, VK_FORMAT_R8G8B8A8_UNORM, (uint32_t)offsetof(ImDrawVert, col)},  // ImU32 is RGBA in memory
  };
  VkPipelineVertexInputStateCreateInfo vi{VK_STRUCTURE_TYPE_PIPELINE_VERTEX_INPUT_STATE_CREATE_INFO};
  vi.vertexBindingDescriptionCount = 1;
  vi.pVertexBindingDescriptions = &vb;
  vi.vertexAttributeDescriptionCount = 3;
  vi.pVertexAttributeDescriptions = attrs;
  VkPipelineInputAssemblyStateCreateInfo ia{VK_STRUCTURE_TYPE_PIPELINE_INPUT_ASSEMBLY_STATE_CREATE_INFO};
  ia.topology = VK_PRIMITIVE_TOPOLOGY_TRIANGLE_LIST;
  VkPipelineViewportStateCreateInfo vp{VK_STRUCTURE_TYPE_PIPELINE_VIEWPORT_STATE_CREATE_INFO};
  vp.viewportCount = 1;
  vp.scissorCount = 1;
  VkPipelineRasterizationStateCreateInfo rs{VK_STRUCTURE_TYPE_PIPELINE_RASTERIZATION_STATE_CREATE_INFO};
  rs.polygonMode = VK_POLYGON_MODE_FILL;
  rs.cullMode = VK_CULL_MODE_NONE;  // ImGui emits both windings
  rs.frontFace = VK_FRONT_FACE_COUNTER_CLOCKWISE;
  rs.lineWidth = 1.0f;
  VkPipelineMultisampleStateCreateInfo ms{VK_STRUCTURE_TYPE_PIPELINE_MULTISAMPLE_STATE_CREATE_INFO};
  ms.rasterizationSamples = VK_SAMPLE_COUNT_1_BIT;
  // Straight alpha, as ImGui expects; alpha accumulates like the colour does.
  VkPipelineColorBlendAttachmentState blend{};
  blend.blendEnable = VK_TRUE;
  blend.srcColorBlendFactor = VK_BLEND_FACTOR_SRC_ALPHA;
  blend.dstColorBlendFactor = VK_BLEND_FACTOR_ONE_MINUS_SRC_ALPHA;
  blend.colorBlendOp = VK_BLEND_OP_ADD;
  blend.srcAlphaBlendFactor = VK_BLEND_FACTOR_ONE;
  blend.dstAlphaBlendFactor = VK_BLEND_FACTOR_ONE_MINUS_SRC_ALPHA;
  blend.alphaBlendOp = VK_BLEND_OP_ADD;
  blend.colorWriteMask = VK_COLOR_COMPONENT_R_BIT | VK_COLOR_COMPONENT_G_BIT | VK_COLOR_COMPONENT_B_BIT |
                         VK_COLOR_COMPONENT_A_BIT;
  VkPipelineColorBlendStateCreateInfo cb{VK_STRUCTURE_TYPE_PIPELINE_COLOR_BLEND_STATE_CREATE_INFO};
  cb.attachmentCount = 1;
  cb.pAttachments = &blend;
  VkDynamicState dyn[2] = {VK_DYNAMIC_STATE_VIEWPORT, VK_DYNAMIC_STATE_SCISSOR};
  VkPipelineDynamicStateCreateInfo ds{VK_STRUCTURE_TYPE_PIPELINE_DYNAMIC_STATE_CREATE_INFO};
  ds.dynamicStateCount = 2;
  ds.pDynamicStates = dyn;

  VkGraphicsPipelineCreateInfo pci{VK_STRUCTURE_TYPE_GRAPHICS_PIPELINE_CREATE_INFO};
  pci.stageCount = 2;
  pci.pStages = stages;
  pci.pVertexInputState = &vi;
  pci.pInputAssemblyState = &ia;
  pci.pViewportState = &vp;
  pci.pRasterizationState = &rs;
  pci.pMultisampleState = &ms;
  pci.pColorBlendState = &cb;
  pci.pDynamicState = &ds;
  pci.layout = pipeline_layout_;
  pci.renderPass = rp;
  pci.subpass = 0;
  VkResult r = vkCreateGraphicsPipelines(dev, VK_NULL_HANDLE, 1, &pci, nullptr, &pipeline_);
  vkDestroyShaderModule(dev, vs, nullptr);
  vkDestroyShaderModule(dev, fs, nullptr);
  vk_check(r, "vkCreateGraphicsPipelines (imgui)");
}

void ImGuiRenderer::create_font_texture() {
  ImGuiIO& io = ImGui::GetIO();
  unsigned char* pixels = nullptr;
  int w = 0, h = 0;
  io.Fonts->GetTexDataAsRGBA32(&pixels, &w, &h);
  VkDeviceSize bytes = (VkDeviceSize)w * h * 4;

  font_ = create_image_rgba8(ctx_, (uint32_t)w, (uint32_t)h);
  tracked_bytes_ += (int64_t)font_.bytes;
  ctx_.track_memory("preview", (int64_t)font_.bytes);

  VkBufferAlloc staging = create_buffer(ctx_, bytes, VK_BUFFER_USAGE_TRANSFER_SRC_BIT, true);
  std::memcpy(staging.mapped, pixels, bytes);
  try {
    VkCommandBuffer cb = ctx_.begin_commands();
    image_barrier(cb, font_.image, VK_IMAGE_LAYOUT_UNDEFINED, VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL,
                  VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, 0, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT);
    VkBufferImageCopy region{};
    region.imageSubresource = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 0, 1};
    region.imageExtent = {(uint32_t)w, (uint32_t)h, 1};
    vkCmdCopyBufferToImage(cb, staging.buffer, font_.image, VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL, 1, &region);
    image_barrier(cb, font_.image, VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL, VK_IMAGE_LAYOUT_SHADER_READ_ONLY_OPTIMAL,
                  VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT,
                  VK_PIPELINE_STAGE_FRAGMENT_SHADER_BIT, VK_ACCESS_SHADER_READ_BIT);
    ctx_.submit_and_wait(cb);
  } catch (...) {
    destroy_buffer(ctx_, staging);
    throw;
  }
  destroy_buffer(ctx_, staging);

  font_set_ = add_texture(font_.view, false);  // linear: glyphs are drawn at fractional offsets
  io.Fonts->SetTexID(to_texture_id(font_set_));
}

VkDescriptorSet ImGuiRenderer::add_texture(VkImageView view, bool nearest) {
  VkDevice dev = ctx_.device();
  // A pool with room left, else a new one (counting ourselves: no failed allocations).
  std::map<VkDescriptorPool, uint32_t> used;
  for (auto& [s, p] : sets_) used[p]++;
  VkDescriptorPool pool = VK_NULL_HANDLE;
  for (VkDescriptorPool p : pools_)
    if (used[p] < kSetsPerPool) {
      pool = p;
      break;
    }
  if (!pool) {
    VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER, kSetsPerPool};
    VkDescriptorPoolCreateInfo pci{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
    pci.flags = VK_DESCRIPTOR_POOL_CREATE_FREE_DESCRIPTOR_SET_BIT;  // remove_texture frees sets
    pci.maxSets = kSetsPerPool;
    pci.poolSizeCount = 1;
    pci.pPoolSizes = &size;
    vk_check(vkCreateDescriptorPool(dev, &pci, nullptr, &pool), "vkCreateDescriptorPool (imgui)");
    pools_.push_back(pool);
  }
  VkDescriptorSetAllocateInfo ai{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
  ai.descriptorPool = pool;
  ai.descriptorSetCount = 1;
  ai.pSetLayouts = &set_layout_;
  VkDescriptorSet set;
  vk_check(vkAllocateDescriptorSets(dev, &ai, &set), "vkAllocateDescriptorSets (imgui)");
  sets_[set] = pool;

  VkDescriptorImageInfo ii{nearest ? nearest_ : linear_, view, VK_IMAGE_LAYOUT_SHADER_READ_ONLY_OPTIMAL};
  VkWriteDescriptorSet w{VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET};
  w.dstSet = set;
  w.dstBinding = 0;
  w.descriptorCount = 1;
  w.descriptorType = VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER;
  w.pImageInfo = &ii;
  vkUpdateDescriptorSets(dev, 1, &w, 0, nullptr);
  return set;
}

void ImGuiRenderer::remove_texture(VkDescriptorSet set) {
  auto it = sets_.find(set);
  if (it == sets_.end()) fail("ImGuiRenderer::remove_texture: unknown descriptor set");
  vk_check(vkFreeDescriptorSets(ctx_.device(), it->second, 1, &set), "vkFreeDescriptorSets (imgui)");
  sets_.erase(it);
}

void ImGuiRenderer::grow(VkBufferAlloc& b, VkDeviceSize need, VkBufferUsageFlags usage) {
  if (b.buffer && b.size >= need) return;
  VkDeviceSize size = 64 * 1024;
  while (size < need) size *= 2;  // amortised growth: a few reallocations at most
  if (b.buffer) {
    tracked_bytes_ -= (int64_t)b.size;
    ctx_.track_memory("preview", -(int64_t)b.size);
    destroy_buffer(ctx_, b);  // the slot's previous frame is finished
  }
  b = create_buffer(ctx_, size, usage, true);
  tracked_bytes_ += (int64_t)size;
  ctx_.track_memory("preview", (int64_t)size);
}

void ImGuiRenderer::setup_render_state(ImDrawData* dd, VkCommandBuffer cb, const FrameBuffers& fb) {
  vkCmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_GRAPHICS, pipeline_);
  if (dd->TotalVtxCount > 0) {
    VkDeviceSize zero = 0;
    vkCmdBindVertexBuffers(cb, 0, 1, &fb.vertices.buffer, &zero);
    vkCmdBindIndexBuffer(cb, fb.indices.buffer, 0, sizeof(ImDrawIdx) == 2 ? VK_INDEX_TYPE_UINT16 : VK_INDEX_TYPE_UINT32);
  }
  VkViewport viewport{0, 0, dd->DisplaySize.x * dd->FramebufferScale.x, dd->DisplaySize.y * dd->FramebufferScale.y,
                      0.0f, 1.0f};
  vkCmdSetViewport(cb, 0, 1, &viewport);
  // ImGui coordinates (DisplayPos .. DisplayPos+DisplaySize) -> clip space -1..1.
  PushConstants pc;
  pc.scale[0] = 2.0f / dd->DisplaySize.x;
  pc.scale[1] = 2.0f / dd->DisplaySize.y;
  pc.translate[0] = -1.0f - dd->DisplayPos.x * pc.scale[0];
  pc.translate[1] = -1.0f - dd->DisplayPos.y * pc.scale[1];
  vkCmdPushConstants(cb, pipeline_layout_, VK_SHADER_STAGE_VERTEX_BIT, 0, sizeof(pc), &pc);
}

void ImGuiRenderer::render(ImDrawData* dd, VkCommandBuffer cb, int frame_slot) {
  if (!dd) return;
  if (frame_slot < 0 || frame_slot >= (int)frames_.size())
    fail("ImGuiRenderer::render: frame slot " + std::to_string(frame_slot) + " out of range");
  float fb_w = dd->DisplaySize.x * dd->FramebufferScale.x;
  float fb_h = dd->DisplaySize.y * dd->FramebufferScale.y;
  if (fb_w <= 0 || fb_h <= 0 || dd->TotalVtxCount == 0) return;

  // Every list's vertices and indices, back to back, in this slot's host-visible buffers.
  FrameBuffers& fb = frames_[(size_t)frame_slot];
  grow(fb.vertices, (VkDeviceSize)dd->TotalVtxCount * sizeof(ImDrawVert), VK_BUFFER_USAGE_VERTEX_BUFFER_BIT);
  grow(fb.indices, (VkDeviceSize)dd->TotalIdxCount * sizeof(ImDrawIdx), VK_BUFFER_USAGE_INDEX_BUFFER_BIT);
  auto* vdst = static_cast<ImDrawVert*>(fb.vertices.mapped);
  auto* idst = static_cast<ImDrawIdx*>(fb.indices.mapped);
  for (int n = 0; n < dd->CmdListsCount; ++n) {
    const ImDrawList* list = dd->CmdLists[n];
    std::memcpy(vdst, list->VtxBuffer.Data, (size_t)list->VtxBuffer.Size * sizeof(ImDrawVert));
    std::memcpy(idst, list->IdxBuffer.Data, (size_t)list->IdxBuffer.Size * sizeof(ImDrawIdx));
    vdst += list->VtxBuffer.Size;
    idst += list->IdxBuffer.Size;
  }
  // Coherent memory, written before the submit: visible to the vertex input stage.

  setup_render_state(dd, cb, fb);
  const ImVec2 off = dd->DisplayPos, scale = dd->FramebufferScale;
  VkDescriptorSet bound = VK_NULL_HANDLE;
  uint32_t global_vtx = 0, global_idx = 0;
  for (int n = 0; n < dd->CmdListsCount; ++n) {
    const ImDrawList* list = dd->CmdLists[n];
    for (int c = 0; c < list->CmdBuffer.Size; ++c) {
      const ImDrawCmd* pcmd = &list->CmdBuffer[c];
      if (pcmd->UserCallback) {
        if (pcmd->UserCallback == ImDrawCallback_ResetRenderState) {
          setup_render_state(dd, cb, fb);
          bound = VK_NULL_HANDLE;
        } else {
          pcmd->UserCallback(list, pcmd);
        }
        continue;
      }
      // Clip rectangle in framebuffer pixels, clamped: Vulkan rejects negative offsets.
      float x0 = std::max((pcmd->ClipRect.x - off.x) * scale.x, 0.0f);
      float y0 = std::max((pcmd->ClipRect.y - off.y) * scale.y, 0.0f);
      float x1 = std::min((pcmd->ClipRect.z - off.x) * scale.x, fb_w);
      float y1 = std::min((pcmd->ClipRect.w - off.y) * scale.y, fb_h);
      if (x1 <= x0 || y1 <= y0) continue;
      VkRect2D scissor{{(int32_t)x0, (int32_t)y0}, {(uint32_t)(x1 - x0), (uint32_t)(y1 - y0)}};
      vkCmdSetScissor(cb, 0, 1, &scissor);

      VkDescriptorSet set = to_descriptor_set(pcmd->GetTexID());
      if (!set) set = font_set_;
      if (set != bound) {
        vkCmdBindDescriptorSets(cb, VK_PIPELINE_BIND_POINT_GRAPHICS, pipeline_layout_, 0, 1, &set, 0, nullptr);
        bound = set;
      }
      vkCmdDrawIndexed(cb, pcmd->ElemCount, 1, pcmd->IdxOffset + global_idx, (int32_t)(pcmd->VtxOffset + global_vtx), 0);
    }
    global_idx += (uint32_t)list->IdxBuffer.Size;
    global_vtx += (uint32_t)list->VtxBuffer.Size;
  }
}

}  // namespace vksd::view

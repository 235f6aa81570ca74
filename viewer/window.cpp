#include "viewer/window.h"

#define GLFW_INCLUDE_VULKAN
#include <GLFW/glfw3.h>

#include <algorithm>
#include <cstring>

#include "runtime/gpu/context.h"
#include "runtime/error.h"
#include "viewer/vk_util.h"

namespace vksd::view {

// ---- GLFW: initialised on first use, terminated when the last window goes -------------------
// (Terminating keeps no X connection open after the last window: a test's Xvfb can then be
// stopped without Xlib later tripping over a dead connection.)
namespace {
int g_windows = 0;
bool g_glfw_ready = false;
std::string g_glfw_error;

void glfw_error(int, const char* description) { g_glfw_error = description ? description : "?"; }

void ensure_glfw() {
  if (g_glfw_ready) return;
  glfwSetErrorCallback(glfw_error);
  g_glfw_error.clear();
  if (!glfwInit())
    fail("cannot open a window: GLFW could not initialise (" + g_glfw_error +
         "). Is DISPLAY set to a running X server? Without a screen, run under Xvfb (xvfb-run).");
  g_glfw_ready = true;
  if (!glfwVulkanSupported()) {
    glfwTerminate();
    g_glfw_ready = false;
    fail("cannot open a Vulkan window: GLFW found no Vulkan loader/driver with window-system (surface) "
         "support (" + g_glfw_error + "); install mesa-vulkan-drivers or your GPU's Vulkan driver");
  }
}

void release_glfw_if_unused() {
  if (g_windows == 0 && g_glfw_ready) {
    glfwTerminate();
    g_glfw_ready = false;
  }
}
}  // namespace

std::vector<std::string> Window::instance_extensions() {
  ensure_glfw();
  uint32_t n = 0;
  const char** names = glfwGetRequiredInstanceExtensions(&n);
  if (!names) fail("GLFW cannot present with Vulkan on this system (no surface extensions): " + g_glfw_error);
  return std::vector<std::string>(names, names + n);
}

Window::Window(int width, int height, const std::string& title) {
  ensure_glfw();
  glfwWindowHint(GLFW_CLIENT_API, GLFW_NO_API);  // Vulkan draws, no GL context
  glfwWindowHint(GLFW_RESIZABLE, GLFW_TRUE);
  g_glfw_error.clear();
  window_ = glfwCreateWindow(width, height, title.c_str(), nullptr, nullptr);
  if (!window_) {
    release_glfw_if_unused();
    fail("cannot create a " + std::to_string(width) + "x" + std::to_string(height) + " window: " + g_glfw_error);
  }
  ++g_windows;
  // The user pointer is ours (ImGui's GLFW backend does not use it).
  glfwSetWindowUserPointer(window_, this);
  glfwSetFramebufferSizeCallback(window_, framebuffer_size_cb);
}

Window::~Window() {
  try {
    detach();
  } catch (...) {
    // Destructors must not throw; a failing wait here means the device is lost anyway.
  }
  glfwDestroyWindow(window_);
  --g_windows;
  release_glfw_if_unused();
}

void Window::framebuffer_size_cb(GLFWwindow* w, int, int) {
  if (auto* self = static_cast<Window*>(glfwGetWindowUserPointer(w))) self->resized_ = true;
}

bool Window::should_close() const { return glfwWindowShouldClose(window_); }

VkCommandBuffer Window::cmd() const {
  if (!in_frame_) fail("Window::cmd() outside begin_frame()/end_frame()");
  return frames_[slot_].cb;
}

// ---- attach / detach --------------------------------------------------------------------------

void Window::attach(Context& ctx) {
  if (ctx_) fail("Window::attach: already attached to a Context");
  ctx_ = &ctx;
  try {
    VkResult r = glfwCreateWindowSurface(ctx.instance(), window_, nullptr, &surface_);
    if (r != VK_SUCCESS)
      fail(std::string("cannot create a Vulkan surface for the window (") + vk_result_name(r) +
           "): create the Context with ContextOptions::instance_extensions = Window::instance_extensions()");
    VkBool32 supported = VK_FALSE;
    vk_check(vkGetPhysicalDeviceSurfaceSupportKHR(ctx.physical(), ctx.queue_family(), surface_, &supported),
             "vkGetPhysicalDeviceSurfaceSupportKHR");
    if (!supported)
      fail("device '" + ctx.info().name + "' cannot present to this window from its compute queue (family " +
           std::to_string(ctx.queue_family()) + "); pick another device with VKSD_DEVICE");

    // UNORM, not SRGB: the pixel values written are exactly ImGui's colours and texture texels.
    uint32_t n = 0;
    vkGetPhysicalDeviceSurfaceFormatsKHR(ctx.physical(), surface_, &n, nullptr);
    std::vector<VkSurfaceFormatKHR> formats(n);
    vkGetPhysicalDeviceSurfaceFormatsKHR(ctx.physical(), surface_, &n, formats.data());
    for (VkFormat want : {VK_FORMAT_B8G8R8A8_UNORM, VK_FORMAT_R8G8B8A8_UNORM})
      for (auto& f : formats)
        if (format_ == VK_FORMAT_UNDEFINED && f.format == want && f.colorSpace == VK_COLOR_SPACE_SRGB_NONLINEAR_KHR)
          format_ = want;
    if (format_ == VK_FORMAT_UNDEFINED && n == 1 && formats[0].format == VK_FORMAT_UNDEFINED)
      format_ = VK_FORMAT_B8G8R8A8_UNORM;  // "any format"
    if (format_ == VK_FORMAT_UNDEFINED)
      fail("the window surface offers neither B8G8R8A8_UNORM nor R8G8B8A8_UNORM");

    // One colour attachment, cleared, left ready to present.
    VkAttachmentDescription att{};
    att.format = format_;
    att.samples = VK_SAMPLE_COUNT_1_BIT;
    att.loadOp = VK_ATTACHMENT_LOAD_OP_CLEAR;
    att.storeOp = VK_ATTACHMENT_STORE_OP_STORE;
    att.stencilLoadOp = VK_ATTACHMENT_LOAD_OP_DONT_CARE;
    att.stencilStoreOp = VK_ATTACHMENT_STORE_OP_DONT_CARE;
    att.initialLayout = VK_IMAGE_LAYOUT_UNDEFINED;
    att.finalLayout = VK_IMAGE_LAYOUT_PRESENT_SRC_KHR;
    VkAttachmentReference ref{0, VK_IMAGE_LAYOUT_COLOR_ATTACHMENT_OPTIMAL};
    VkSubpassDescription sub{};
    sub.pipelineBindPoint = VK_PIPELINE_BIND_POINT_GRAPHICS;
    sub.colorAttachmentCount = 1;
    sub.pColorAttachments = &ref;
    VkSubpassDependency deps[2] = {};
    // The acquire semaphore is waited at COLOR_ATTACHMENT_OUTPUT: the initial layout
    // transition and the clear must come after it.
    deps[0].srcSubpass = VK_SUBPASS_EXTERNAL;
    deps[0].dstSubpass = 0;
    deps[0].srcStageMask = VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT;
    deps[0].srcAccessMask = 0;
    deps[0].dstStageMask = VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT;
    deps[0].dstAccessMask = VK_ACCESS_COLOR_ATTACHMENT_WRITE_BIT | VK_ACCESS_COLOR_ATTACHMENT_READ_BIT;
    // The capture copy (a transfer after the pass) reads what the pass wrote; the barrier in
    // end_frame chains on this TRANSFER stage. Presenting is ordered by the semaphore.
    deps[1].srcSubpass = 0;
    deps[1].dstSubpass = VK_SUBPASS_EXTERNAL;
    deps[1].srcStageMask = VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT;
    deps[1].srcAccessMask = VK_ACCESS_COLOR_ATTACHMENT_WRITE_BIT;
    deps[1].dstStageMask = VK_PIPELINE_STAGE_TRANSFER_BIT;
    deps[1].dstAccessMask = VK_ACCESS_TRANSFER_READ_BIT;
    VkRenderPassCreateInfo rpci{VK_STRUCTURE_TYPE_RENDER_PASS_CREATE_INFO};
    rpci.attachmentCount = 1;
    rpci.pAttachments = &att;
    rpci.subpassCount = 1;
    rpci.pSubpasses = &sub;
    rpci.dependencyCount = 2;
    rpci.pDependencies = deps;
    vk_check(vkCreateRenderPass(ctx.device(), &rpci, nullptr, &render_pass_), "vkCreateRenderPass (window)");

    for (auto& f : frames_) {
      VkCommandPoolCreateInfo pci{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
      pci.flags = VK_COMMAND_POOL_CREATE_TRANSIENT_BIT;
      pci.queueFamilyIndex = ctx.queue_family();
      vk_check(vkCreateCommandPool(ctx.device(), &pci, nullptr, &f.pool), "vkCreateCommandPool (window)");
      VkCommandBufferAllocateInfo ai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
      ai.commandPool = f.pool;
      ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
      ai.commandBufferCount = 1;
      vk_check(vkAllocateCommandBuffers(ctx.device(), &ai, &f.cb), "vkAllocateCommandBuffers (window)");
      VkFenceCreateInfo fci{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
      fci.flags = VK_FENCE_CREATE_SIGNALED_BIT;  // the first begin_frame finds it "finished"
      vk_check(vkCreateFence(ctx.device(), &fci, nullptr, &f.fence), "vkCreateFence (window)");
      f.submitted = true;
      VkSemaphoreCreateInfo sci{VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO};
      vk_check(vkCreateSemaphore(ctx.device(), &sci, nullptr, &f.image_available), "vkCreateSemaphore (window)");
    }
    create_swapchain();
  } catch (...) {
    detach();
    throw;
  }
}

void Window::detach() {
  if (!ctx_) return;
  VkDevice dev = ctx_->device();
  // Presents have no fence: only an idle queue guarantees the presentation engine is done
  // with the swapchain and the render-finished semaphores.
  ctx_->wait_idle();
  destroy_swapchain_views();
  if (swapchain_) vkDestroySwapchainKHR(dev, swapchain_, nullptr);
  swapchain_ = VK_NULL_HANDLE;
  ctx_->track_memory("swapchain", -swapchain_bytes_);
  swapchain_bytes_ = 0;
  if (surface_) vkDestroySurfaceKHR(ctx_->instance(), surface_, nullptr);
  surface_ = VK_NULL_HANDLE;
  for (VkSemaphore s : render_finished_) vkDestroySemaphore(dev, s, nullptr);
  render_finished_.clear();
  for (auto& f : frames_) {
    free_capture_buffer(f);
    if (f.image_available) vkDestroySemaphore(dev, f.image_available, nullptr);
    if (f.fence) vkDestroyFence(dev, f.fence, nullptr);
    if (f.pool) vkDestroyCommandPool(dev, f.pool, nullptr);  // frees its command buffer
    f = Frame{};
  }
  if (render_pass_) vkDestroyRenderPass(dev, render_pass_, nullptr);
  render_pass_ = VK_NULL_HANDLE;
  in_frame_ = in_pass_ = false;
  capture_slot_ = -1;
  ctx_ = nullptr;
}

// ---- swapchain --------------------------------------------------------------------------------

void Window::create_swapchain() {
  VkDevice dev = ctx_->device();
  VkSurfaceCapabilitiesKHR caps;
  vk_check(vkGetPhysicalDeviceSurfaceCapabilitiesKHR(ctx_->physical(), surface_, &caps),
           "vkGetPhysicalDeviceSurfaceCapabilitiesKHR");
  VkExtent2D ext = caps.currentExtent;
  if (ext.width == UINT32_MAX) {  // the surface takes the swapchain's size: use the framebuffer's
    int w = 0, h = 0;
    glfwGetFramebufferSize(window_, &w, &h);
    ext.width = std::clamp((uint32_t)w, caps.minImageExtent.width, caps.maxImageExtent.width);
    ext.height = std::clamp((uint32_t)h, caps.minImageExtent.height, caps.maxImageExtent.height);
  }
  if (ext.width == 0 || ext.height == 0) {  // minimised: try again later
    resized_ = true;
    return;
  }
  if (!(caps.supportedUsageFlags & VK_IMAGE_USAGE_TRANSFER_SRC_BIT))
    fail("the window surface does not allow TRANSFER_SRC swapchain images (needed for captures)");

  uint32_t count = caps.minImageCount + 1;  // one more than the minimum: never wait for the engine
  if (caps.maxImageCount) count = std::min(count, caps.maxImageCount);
  VkCompositeAlphaFlagBitsKHR alpha = VK_COMPOSITE_ALPHA_OPAQUE_BIT_KHR;
  if (!(caps.supportedCompositeAlpha & alpha))
    for (uint32_t bit = 1; bit <= VK_COMPOSITE_ALPHA_INHERIT_BIT_KHR; bit <<= 1)
      if (caps.supportedCompositeAlpha & bit) {
        alpha = (VkCompositeAlphaFlagBitsKHR)bit;
        break;
      }

  VkSwapchainKHR old = swapchain_;
  VkSwapchainCreateInfoKHR sci{VK_STRUCTURE_TYPE_SWAPCHAIN_CREATE_INFO_KHR};
  sci.surface = surface_;
  sci.minImageCount = count;
  sci.imageFormat = format_;
  sci.imageColorSpace = VK_COLOR_SPACE_SRGB_NONLINEAR_KHR;
  sci.imageExtent = ext;
  sci.imageArrayLayers = 1;
  sci.imageUsage = VK_IMAGE_USAGE_COLOR_ATTACHMENT_BIT | VK_IMAGE_USAGE_TRANSFER_SRC_BIT;
  sci.imageSharingMode = VK_SHARING_MODE_EXCLUSIVE;
  sci.preTransform = caps.currentTransform;
  sci.compositeAlpha = alpha;
  sci.presentMode = VK_PRESENT_MODE_FIFO_KHR;  // always available; vsync keeps the CPU idle
  sci.clipped = VK_TRUE;
  sci.oldSwapchain = old;
  vk_check(vkCreateSwapchainKHR(dev, &sci, nullptr, &swapchain_), "vkCreateSwapchainKHR");
  if (old) vkDestroySwapchainKHR(dev, old, nullptr);
  extent_ = ext;

  uint32_t n = 0;
  vkGetSwapchainImagesKHR(dev, swapchain_, &n, nullptr);
  images_.resize(n);
  vkGetSwapchainImagesKHR(dev, swapchain_, &n, images_.data());
  image_slot_.assign(n, -1);
  // Semaphores are kept across recreation (a present may still wait on an old one); add more
  // when the new swapchain has more images.
  while (render_finished_.size() < n) {
    VkSemaphoreCreateInfo si{VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO};
    VkSemaphore s;
    vk_check(vkCreateSemaphore(dev, &si, nullptr, &s), "vkCreateSemaphore (window)");
    render_finished_.push_back(s);
  }
  for (VkImage img : images_) {
    VkImageViewCreateInfo vci{VK_STRUCTURE_TYPE_IMAGE_VIEW_CREATE_INFO};
    vci.image = img;
    vci.viewType = VK_IMAGE_VIEW_TYPE_2D;
    vci.format = format_;
    vci.subresourceRange = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1};
    VkImageView v;
    vk_check(vkCreateImageView(dev, &vci, nullptr, &v), "vkCreateImageView (swapchain)");
    views_.push_back(v);
    VkFramebufferCreateInfo fci{VK_STRUCTURE_TYPE_FRAMEBUFFER_CREATE_INFO};
    fci.renderPass = render_pass_;
    fci.attachmentCount = 1;
    fci.pAttachments = &v;
    fci.width = ext.width;
    fci.height = ext.height;
    fci.layers = 1;
    VkFramebuffer fb;
    vk_check(vkCreateFramebuffer(dev, &fci, nullptr, &fb), "vkCreateFramebuffer");
    framebuffers_.push_back(fb);
  }
  // The driver owns the images' memory; count what they must take at least.
  int64_t bytes = (int64_t)ext.width * ext.height * 4 * n;
  ctx_->track_memory("swapchain", bytes - swapchain_bytes_);
  swapchain_bytes_ = bytes;
  resized_ = false;
}

void Window::destroy_swapchain_views() {
  VkDevice dev = ctx_->device();
  for (VkFramebuffer fb : framebuffers_) vkDestroyFramebuffer(dev, fb, nullptr);
  for (VkImageView v : views_) vkDestroyImageView(dev, v, nullptr);
  framebuffers_.clear();
  views_.clear();
  images_.clear();
}

void Window::recreate_swapchain() {
  int w = 0, h = 0;
  glfwGetFramebufferSize(window_, &w, &h);
  if (w == 0 || h == 0) {
    resized_ = true;
    return;
  }
  // Device-wide wait: besides our frames, pending presents must be done with the old swapchain
  // (they have no fence). This also waits for in-flight compute, once per resize.
  ctx_->wait_idle();
  destroy_swapchain_views();
  create_swapchain();
}

// ---- frames -----------------------------------------------------------------------------------

void Window::wait_frames() {
  if (!ctx_) return;
  for (auto& f : frames_)
    if (f.submitted && f.fence)
      vk_check(vkWaitForFences(ctx_->device(), 1, &f.fence, VK_TRUE, UINT64_MAX), "vkWaitForFences (window)");
}

bool Window::begin_frame() {
  if (!ctx_) fail("Window::begin_frame before attach()");
  if (in_frame_) fail("Window::begin_frame called twice without end_frame");
  int w = 0, h = 0;
  glfwGetFramebufferSize(window_, &w, &h);
  if (w == 0 || h == 0) {  // minimised: nothing to draw, don't spin
    glfwWaitEventsTimeout(0.05);
    return false;
  }
  if (resized_ || !swapchain_) {
    recreate_swapchain();
    if (!swapchain_ || resized_) return false;
  }
  VkDevice dev = ctx_->device();
  Frame& f = frames_[slot_];
  if (f.submitted)
    vk_check(vkWaitForFences(dev, 1, &f.fence, VK_TRUE, UINT64_MAX), "vkWaitForFences (window)");

  VkResult r = vkAcquireNextImageKHR(dev, swapchain_, UINT64_MAX, f.image_available, VK_NULL_HANDLE, &image_index_);
  if (r == VK_ERROR_OUT_OF_DATE_KHR) {  // the semaphore was not signalled: nothing to undo
    resized_ = true;
    recreate_swapchain();
    return false;
  }
  if (r == VK_SUBOPTIMAL_KHR)
    resized_ = true;  // still usable (the semaphore is signalled): draw, then recreate
  else
    vk_check(r, "vkAcquireNextImageKHR");

  // The image may have been rendered by the other slot, whose frame could still be running
  // (its render-finished semaphore too); normally presentation already ordered this.
  int prev = image_slot_[image_index_];
  if (prev >= 0 && prev != slot_ && frames_[prev].submitted)
    vk_check(vkWaitForFences(dev, 1, &frames_[prev].fence, VK_TRUE, UINT64_MAX), "vkWaitForFences (window)");
  image_slot_[image_index_] = slot_;

  vk_check(vkResetFences(dev, 1, &f.fence), "vkResetFences");
  f.submitted = false;
  vk_check(vkResetCommandPool(dev, f.pool, 0), "vkResetCommandPool (window)");
  VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  vk_check(vkBeginCommandBuffer(f.cb, &bi), "vkBeginCommandBuffer (window)");
  in_frame_ = true;

  auto now = std::chrono::steady_clock::now();
  if (last_begin_.time_since_epoch().count())
    last_frame_ms_ = std::chrono::duration<double, std::milli>(now - last_begin_).count();
  last_begin_ = now;
  return true;
}

void Window::begin_render_pass(float r, float g, float b) {
  if (!in_frame_) fail("Window::begin_render_pass outside begin_frame()/end_frame()");
  if (in_pass_) fail("Window::begin_render_pass called twice in one frame");
  VkClearValue clear{};
  clear.color = {{r, g, b, 1.0f}};
  VkRenderPassBeginInfo rbi{VK_STRUCTURE_TYPE_RENDER_PASS_BEGIN_INFO};
  rbi.renderPass = render_pass_;
  rbi.framebuffer = framebuffers_[image_index_];
  rbi.renderArea = {{0, 0}, extent_};
  rbi.clearValueCount = 1;
  rbi.pClearValues = &clear;
  vkCmdBeginRenderPass(frames_[slot_].cb, &rbi, VK_SUBPASS_CONTENTS_INLINE);
  in_pass_ = true;
}

void Window::ensure_capture_buffer(Frame& f, VkDeviceSize bytes) {
  if (f.capture && f.capture_bytes == bytes) return;
  free_capture_buffer(f);  // this slot's previous frame is finished (begin_frame waited)
  VkBufferAlloc b = create_buffer(*ctx_, bytes, VK_BUFFER_USAGE_TRANSFER_DST_BIT, true);
  f.capture = b.buffer;
  f.capture_mem = b.memory;
  f.capture_map = b.mapped;
  f.capture_bytes = bytes;
  ctx_->track_memory("swapchain", (int64_t)bytes);
}

void Window::free_capture_buffer(Frame& f) {
  if (!f.capture) return;
  VkBufferAlloc b{f.capture, f.capture_mem, f.capture_bytes, f.capture_map};
  destroy_buffer(*ctx_, b);
  ctx_->track_memory("swapchain", -(int64_t)f.capture_bytes);
  f.capture = VK_NULL_HANDLE;
  f.capture_mem = VK_NULL_HANDLE;
  f.capture_map = nullptr;
  f.capture_bytes = 0;
}

void Window::end_frame(bool capture) {
  if (!in_frame_) fail("Window::end_frame without begin_frame");
  Frame& f = frames_[slot_];
  if (!in_pass_) begin_render_pass(0, 0, 0);  // the image must still reach PRESENT_SRC
  vkCmdEndRenderPass(f.cb);
  in_pass_ = false;
  VkImage image = images_[image_index_];

  if (capture) {
    ensure_capture_buffer(f, (VkDeviceSize)extent_.width * extent_.height * 4);
    // PRESENT_SRC -> TRANSFER_SRC. Chains on the render pass's dependency into TRANSFER (which
    // orders the final layout transition); naming the colour writes too costs nothing.
    image_barrier(f.cb, image, VK_IMAGE_LAYOUT_PRESENT_SRC_KHR, VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL,
                  VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                  VK_ACCESS_COLOR_ATTACHMENT_WRITE_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_READ_BIT);
    VkBufferImageCopy region{};
    region.imageSubresource = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 0, 1};
    region.imageExtent = {extent_.width, extent_.height, 1};
    vkCmdCopyImageToBuffer(f.cb, image, VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL, f.capture, 1, &region);
    // Back to PRESENT_SRC after the read; the present waits on the semaphore signalled at the end.
    image_barrier(f.cb, image, VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL, VK_IMAGE_LAYOUT_PRESENT_SRC_KHR,
                  VK_PIPELINE_STAGE_TRANSFER_BIT, 0, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, 0);
    VkBufferMemoryBarrier bb{VK_STRUCTURE_TYPE_BUFFER_MEMORY_BARRIER};
    bb.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
    bb.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
    bb.srcQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
    bb.dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
    bb.buffer = f.capture;
    bb.size = VK_WHOLE_SIZE;
    vkCmdPipelineBarrier(f.cb, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 0, nullptr, 1, &bb, 0,
                         nullptr);
    capture_slot_ = slot_;
    capture_extent_ = extent_;
    capture_format_ = format_;
  }
  vk_check(vkEndCommandBuffer(f.cb), "vkEndCommandBuffer (window)");
  in_frame_ = false;

  VkPipelineStageFlags wait_stage = VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT;
  VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
  si.waitSemaphoreCount = 1;
  si.pWaitSemaphores = &f.image_available;
  si.pWaitDstStageMask = &wait_stage;
  si.commandBufferCount = 1;
  si.pCommandBuffers = &f.cb;
  si.signalSemaphoreCount = 1;
  si.pSignalSemaphores = &render_finished_[image_index_];
  ctx_->submit(si, f.fence);
  f.submitted = true;

  VkPresentInfoKHR pi{VK_STRUCTURE_TYPE_PRESENT_INFO_KHR};
  pi.waitSemaphoreCount = 1;
  pi.pWaitSemaphores = &render_finished_[image_index_];
  pi.swapchainCount = 1;
  pi.pSwapchains = &swapchain_;
  pi.pImageIndices = &image_index_;
  VkResult r = ctx_->present(pi);
  if (r == VK_ERROR_OUT_OF_DATE_KHR || r == VK_SUBOPTIMAL_KHR)
    resized_ = true;  // recreated at the next begin_frame
  else
    vk_check(r, "vkQueuePresentKHR");
  slot_ = (slot_ + 1) % kFramesInFlight;
}

Image Window::take_capture() {
  if (capture_slot_ < 0) fail("Window::take_capture: no frame was captured (end_frame(true) first)");
  Frame& f = frames_[capture_slot_];
  // If the slot's fence was reset for a newer frame, begin_frame waited for it first, so the
  // capture is complete; otherwise wait for the captured frame (or a later one on the slot).
  if (f.submitted)
    vk_check(vkWaitForFences(ctx_->device(), 1, &f.fence, VK_TRUE, UINT64_MAX), "vkWaitForFences (capture)");
  Image img((int)capture_extent_.width, (int)capture_extent_.height, 3);
  const uint8_t* src = static_cast<const uint8_t*>(f.capture_map);
  bool bgra = capture_format_ == VK_FORMAT_B8G8R8A8_UNORM;
  size_t n = (size_t)img.width * img.height;
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* p = src + i * 4;
    uint8_t* q = img.pixels.data() + i * 3;
    q[0] = bgra ? p[2] : p[0];
    q[1] = p[1];
    q[2] = bgra ? p[0] : p[2];
  }
  return img;
}

}  // namespace vksd::view

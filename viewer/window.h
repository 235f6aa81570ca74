// Window: a GLFW window presenting through a Vulkan swapchain on the runtime's own device.
//
// The viewer draws on the same VkDevice/VkQueue that generation computes on, so every
// submit and present goes through Context::submit/present (they hold the queue lock).
//
// Per frame:   begin_frame()          wait for this slot's previous frame, acquire an image
//              cmd()                  record copies/dispatches (outside the render pass)
//              begin_render_pass()    clear; record ImGui draws
//              end_frame(capture)     end the pass, optionally copy the image out, submit, present
//
// Lifetime: create the Context with Window::instance_extensions(), then the Window, attach()
// it; destroy the Window (or call detach()) BEFORE the Context.
#pragma once
#include <chrono>
#include <string>
#include <vector>
#include <vulkan/vulkan.h>

#include "runtime/io/image_io.h"

struct GLFWwindow;

namespace vksd {
class Context;
}

namespace vksd::view {

class Window {
 public:
  static constexpr int kFramesInFlight = 2;

  // glfwInit (shared by all windows of the process), a resizable window with GLFW_NO_API.
  // fail()s with a clear message when there is no display or GLFW lacks Vulkan support.
  Window(int width, int height, const std::string& title);
  ~Window();  // detach(), then the GLFW window (GLFW itself goes with the last window)
  Window(const Window&) = delete;
  Window& operator=(const Window&) = delete;

  // The instance extensions presenting needs (glfwGetRequiredInstanceExtensions); calls
  // glfwInit if needed. Pass them as ContextOptions::instance_extensions.
  static std::vector<std::string> instance_extensions();

  // Surface, swapchain, render pass, framebuffers and per-frame objects on ctx's device.
  void attach(Context& ctx);
  // Destroys every Vulkan object it created (the GLFW window stays). Waits for the whole
  // queue to go idle first (Context::wait_idle): presents have no fence, so that is the only
  // way to know the presentation engine is done with the swapchain and its semaphores.
  // Called by ~Window; call it yourself when the Context must go first.
  void detach();

  GLFWwindow* handle() const { return window_; }
  bool should_close() const;

  // Waits for this frame slot's fence and acquires the next image. False when there is
  // nothing to draw now (minimised / zero-size framebuffer: it waits for events briefly;
  // swapchain out of date: recreated, try on the next loop iteration). Recreating the
  // swapchain (resize) waits for the queue to go idle, as detach() does.
  // Call glfwPollEvents/glfwWaitEvents* before it: resizes arrive as GLFW events.
  bool begin_frame();
  // 0..kFramesInFlight-1: index for clients' per-frame resources. Once begin_frame() returned
  // true, everything the previous frame of this slot did on the GPU is finished.
  int frame_slot() const { return slot_; }
  // The frame's command buffer, recording, outside any render pass.
  VkCommandBuffer cmd() const;
  void begin_render_pass(float r, float g, float b);
  // Ends the render pass (begins an empty one first if the client never did), optionally
  // copies the swapchain image to a host-visible buffer, submits and presents.
  void end_frame(bool capture = false);
  // The last captured frame as 8-bit RGB (framebuffer size, whatever the swapchain's channel
  // order); waits for that frame. fail()s when no frame was captured.
  Image take_capture();

  // Stays valid for the Window's life (swapchain recreation keeps the same format), so
  // pipelines built against it survive resizes.
  VkRenderPass render_pass() const { return render_pass_; }
  VkExtent2D extent() const { return extent_; }
  VkFormat format() const { return format_; }
  void wait_frames();  // waits for this window's in-flight frames (not the whole device)
  double last_frame_ms() const { return last_frame_ms_; }

 private:
  struct Frame {
    VkCommandPool pool = VK_NULL_HANDLE;
    VkCommandBuffer cb = VK_NULL_HANDLE;
    VkFence fence = VK_NULL_HANDLE;              // signalled when the slot's submit finished
    VkSemaphore image_available = VK_NULL_HANDLE;  // acquire -> submit
    bool submitted = false;  // fence will be signalled (false between reset and submit)
    // Capture target: the swapchain image copied here when end_frame(true).
    VkBuffer capture = VK_NULL_HANDLE;
    VkDeviceMemory capture_mem = VK_NULL_HANDLE;
    VkDeviceSize capture_bytes = 0;
    void* capture_map = nullptr;
  };

  void create_swapchain();
  void destroy_swapchain_views();  // framebuffers + image views (not the swapchain)
  void recreate_swapchain();
  void ensure_capture_buffer(Frame& f, VkDeviceSize bytes);
  void free_capture_buffer(Frame& f);
  static void framebuffer_size_cb(GLFWwindow* w, int width, int height);

  GLFWwindow* window_ = nullptr;
  Context* ctx_ = nullptr;
  VkSurfaceKHR surface_ = VK_NULL_HANDLE;
  VkSwapchainKHR swapchain_ = VK_NULL_HANDLE;
  VkFormat format_ = VK_FORMAT_UNDEFINED;
  VkExtent2D extent_{0, 0};
  VkRenderPass render_pass_ = VK_NULL_HANDLE;
  std::vector<VkImage> images_;
  std::vector<VkImageView> views_;
  std::vector<VkFramebuffer> framebuffers_;
  // Present waits on a semaphore per swapchain IMAGE: it is only signalled again once that
  // image was re-acquired, i.e. after the presentation engine consumed the previous wait.
  std::vector<VkSemaphore> render_finished_;
  std::vector<int> image_slot_;  // frame slot that last rendered each image (-1: none)
  int64_t swapchain_bytes_ = 0;  // tracked under "swapchain"

  Frame frames_[kFramesInFlight];
  int slot_ = 0;
  uint32_t image_index_ = 0;
  bool in_frame_ = false, in_pass_ = false;
  bool resized_ = false;  // framebuffer size callback or SUBOPTIMAL/OUT_OF_DATE
  int capture_slot_ = -1;
  VkExtent2D capture_extent_{0, 0};
  VkFormat capture_format_ = VK_FORMAT_UNDEFINED;
  std::chrono::steady_clock::time_point last_begin_{};
  double last_frame_ms_ = 0.0;
};

}  // namespace vksd::view

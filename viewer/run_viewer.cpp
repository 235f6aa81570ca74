// run_viewer: the window, the shared Vulkan context and the frame loop.
//   The window comes first (GLFW tells which instance extensions presenting needs), then the
//   Context on the device the runtime computes on, then ImGui and our render backend. Tear-down
//   runs in reverse, and the Context (destroyed last) reports any leaked Vulkan object.
#include <GLFW/glfw3.h>
#include <imgui.h>
#include <imgui_impl_glfw.h>

#include <chrono>
#include <cstdio>
#include <memory>

#include "runtime/gpu/context.h"
#include "runtime/error.h"
#include "viewer/app.h"
#include "viewer/imgui_renderer.h"
#include "viewer/viewer.h"
#include "viewer/window.h"

namespace vksd::view {

int run_viewer(const ViewOptions& o) {
  auto window = std::make_unique<Window>(o.window_width, o.window_height, "vksd - watch Stable Diffusion denoise");
  ContextOptions co = ContextOptions::from_env();
  if (o.fp32) co.prefer_fp16 = false;
  co.instance_extensions = Window::instance_extensions();
  auto ctx_owner = std::make_unique<Context>(co);
  Context& ctx = *ctx_owner;
  window->attach(ctx);

  IMGUI_CHECKVERSION();
  ImGui::CreateContext();
  ImGuiIO& io = ImGui::GetIO();
  io.IniFilename = nullptr;  // the layout is fixed; nothing to remember between runs
  ImGui::StyleColorsDark();
  ImGui_ImplGlfw_InitForVulkan(window->handle(), true);
  int code = 0;
  {
    auto renderer = std::make_unique<ImGuiRenderer>(ctx, window->render_pass(), Window::kFramesInFlight);
    auto app = std::make_unique<ViewerApp>(ctx, *window, *renderer, o);
    auto last = std::chrono::steady_clock::now();
    // On a CPU driver (lavapipe) the UI's drawing competes with the generation for the same
    // cores: while a run is active, draw at most ~20 frames a second (events still wake it).
    const bool cpu_device = ctx.info().type == "CPU";
    while (!window->should_close() && !app->quit()) {
      // While nothing runs, sleep until an event (or a short timeout for the status line);
      // while generating, keep drawing so every step shows up at once.
      if (app->busy() && cpu_device) {
        const double since = std::chrono::duration<double>(std::chrono::steady_clock::now() - last).count();
        if (since < 0.05) glfwWaitEventsTimeout(0.05 - since);
        glfwPollEvents();
      } else if (app->busy() || !o.screenshot.empty()) {
        glfwPollEvents();
      } else {
        glfwWaitEventsTimeout(0.1);
      }
      if (!window->begin_frame()) continue;
      const auto now = std::chrono::steady_clock::now();
      app->note_frame_time(std::chrono::duration<double, std::milli>(now - last).count());
      last = now;
      ImGui_ImplGlfw_NewFrame();
      ImGui::NewFrame();
      app->frame(window->cmd(), window->frame_slot());
      ImGui::Render();
      window->begin_render_pass(0.08f, 0.08f, 0.09f);
      renderer->render(ImGui::GetDrawData(), window->cmd(), window->frame_slot());
      const bool shoot = app->wants_capture();
      window->end_frame(shoot);
      if (shoot) app->captured(window->take_capture());
    }
    // Closing mid-generation: the job is cancelled between steps and joined, then every frame
    // in flight finishes before the textures and the renderer go.
    code = app->exit_code();
    app.reset();
    window->wait_frames();
    renderer.reset();
  }
  ImGui_ImplGlfw_Shutdown();
  ImGui::DestroyContext();
  window.reset();
  const std::string last_message = ctx.last_validation_message();
  ctx_owner.reset();  // leaked objects are reported here
  if (co.validation && Context::process_validation_messages() > 0) {
    std::fprintf(stderr, "vksd view: %llu Vulkan validation messages (last: %s)\n",
                 (unsigned long long)Context::process_validation_messages(), last_message.c_str());
    if (code == 0) code = 3;
  }
  return code;
}

}  // namespace vksd::view

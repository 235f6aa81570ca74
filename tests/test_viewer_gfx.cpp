// The viewer's graphics layer on a virtual X server: a window presenting from the runtime's
// own device, our ImGui renderer drawing user textures (uploaded from the host and copied from
// a device buffer), exact pixels read back through a capture, a resize, and a compute-queue
// user on another thread — all with zero validation messages, leaks included.
#include <doctest/doctest.h>

#include <GLFW/glfw3.h>
#include <imgui.h>
#include <imgui_impl_glfw.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "runtime/gpu/context.h"
#include "runtime/error.h"
#include "runtime/io/image_io.h"
#include "runtime/gpu/memory.h"
#include "tests/xvfb_display.h"
#include "viewer/imgui_renderer.h"
#include "viewer/texture.h"
#include "viewer/window.h"

using namespace vksd;

namespace {

constexpr int kCell = 16;            // each texel drawn as a 16x16 block (nearest sampling)
const ImVec2 kImagePos(32.f, 40.f);  // where the first image's window starts

// 4x4 patterns with 16 distinct, exactly representable colours.
uint8_t pattern_a(int x, int y, int c) {
  const uint8_t v[3] = {(uint8_t)(20 + 40 * x), (uint8_t)(30 + 40 * y), (uint8_t)(200 - 10 * (4 * y + x))};
  return v[c];
}
uint8_t pattern_b(int x, int y, int c) {
  const uint8_t v[3] = {(uint8_t)(250 - 50 * x), (uint8_t)(15 + 45 * y), (uint8_t)(7 * (x + 4 * y))};
  return v[c];
}
uint8_t pattern_a2(int x, int y, int c) { return (uint8_t)(255 - pattern_a(x, y, c)); }

// Every cell centre of a 4x4 texture drawn at `origin` (scaled kCell times) equals `pat`.
void check_cells(const Image& shot, ImVec2 origin, uint8_t (*pat)(int, int, int), const char* what) {
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x) {
      int px = (int)origin.x + kCell * x + kCell / 2, py = (int)origin.y + kCell * y + kCell / 2;
      REQUIRE(px < shot.width);
      REQUIRE(py < shot.height);
      const uint8_t* p = shot.at(px, py);
      INFO(what << " cell (" << x << "," << y << ") at pixel (" << px << "," << py << "): got " << (int)p[0] << ","
                << (int)p[1] << "," << (int)p[2]);
      CHECK(p[0] == pat(x, y, 0));
      CHECK(p[1] == pat(x, y, 1));
      CHECK(p[2] == pat(x, y, 2));
    }
}

}  // namespace

TEST_CASE("viewer gfx: ImGui draws user textures exactly, captures, survives a resize, zero validation messages") {
  REQUIRE_MESSAGE((std::getenv("DISPLAY") || test::XvfbDisplay::available()),
                  "needs an X display: set DISPLAY or install Xvfb (apt install xvfb)");
  const uint64_t messages_before = Context::process_validation_messages();
  {
    test::XvfbDisplay xvfb;
    ContextOptions opts = ContextOptions::from_env();
    opts.instance_extensions = view::Window::instance_extensions();
    Context ctx(opts);
    {
      view::Window win(640, 400, "vksd viewer gfx test");
      win.attach(ctx);
      CHECK(win.extent().width == 640);
      CHECK(win.extent().height == 400);
      CHECK(ctx.memory_in_use()["swapchain"] > 0);

      ImGui::CreateContext();
      ImGui::GetIO().IniFilename = nullptr;  // no imgui.ini in the working directory
      ImGui_ImplGlfw_InitForVulkan(win.handle(), true);
      {
        view::ImGuiRenderer renderer(ctx, win.render_pass(), view::Window::kFramesInFlight);
        view::Texture tex_a(ctx, renderer, 4, 4, true);
        view::Texture tex_b(ctx, renderer, 4, 4, true);
        CHECK(ctx.memory_in_use()["preview"] > 0);

        // The second texture's texels come from a device buffer (as a preview kernel's output).
        Buffer src(ctx, 4 * 4 * 4, Buffer::Use::Device, "preview test source");
        uint8_t rgba_b[4 * 4 * 4];
        for (int y = 0; y < 4; ++y)
          for (int x = 0; x < 4; ++x)
            for (int c = 0; c < 4; ++c) rgba_b[(y * 4 + x) * 4 + c] = c == 3 ? 255 : pattern_b(x, y, c);
        Image img_a(4, 4, 3), img_a2(4, 4, 3);
        for (int y = 0; y < 4; ++y)
          for (int x = 0; x < 4; ++x)
            for (int c = 0; c < 3; ++c) {
              img_a.at(x, y)[c] = pattern_a(x, y, c);
              img_a2.at(x, y)[c] = pattern_a2(x, y, c);
            }

        // Another thread uses the same queue meanwhile, as generation does.
        std::atomic<bool> stop{false};
        std::atomic<int> compute_submits{0};
        Buffer scratch(ctx, 1 << 16, Buffer::Use::Device, "activations test");
        std::thread other([&] {
          while (!stop) {
            VkCommandBuffer cb = ctx.begin_commands();
            vkCmdFillBuffer(cb, scratch.handle(), 0, VK_WHOLE_SIZE, (uint32_t)compute_submits.load());
            ctx.submit_and_wait(cb);
            compute_submits++;
          }
        });

        ImVec2 pos_a, pos_b;
        std::unique_ptr<view::Texture> temp;  // drawn once, then destroyed after wait_frames
        auto frame = [&](bool capture, const std::function<void(VkCommandBuffer)>& record) {
          glfwPollEvents();
          if (!win.begin_frame()) return false;
          if (record) record(win.cmd());
          ImGui_ImplGlfw_NewFrame();
          ImGui::NewFrame();
          ImGui::SetNextWindowPos(kImagePos);
          ImGui::PushStyleVar(ImGuiStyleVar_WindowPadding, ImVec2(0, 0));
          ImGui::PushStyleVar(ImGuiStyleVar_WindowBorderSize, 0.f);
          ImGui::PushStyleVar(ImGuiStyleVar_ItemSpacing, ImVec2(16, 16));
          ImGui::Begin("previews", nullptr,
                       ImGuiWindowFlags_NoDecoration | ImGuiWindowFlags_NoBackground |
                           ImGuiWindowFlags_AlwaysAutoResize | ImGuiWindowFlags_NoSavedSettings);
          ImGui::Image(tex_a.id(), ImVec2(4 * kCell, 4 * kCell));
          pos_a = ImGui::GetItemRectMin();
          ImGui::SameLine();
          ImGui::Image(tex_b.id(), ImVec2(4 * kCell, 4 * kCell));
          pos_b = ImGui::GetItemRectMin();
          if (temp) ImGui::Image(temp->id(), ImVec2(32, 32));
          ImGui::End();
          ImGui::PopStyleVar(3);
          ImGui::SetNextWindowPos(ImVec2(250, 40));
          ImGui::Begin("status", nullptr, ImGuiWindowFlags_AlwaysAutoResize | ImGuiWindowFlags_NoSavedSettings);
          ImGui::Text("frame %.1f ms", win.last_frame_ms());  // font atlas drawing
          ImGui::End();
          ImGui::Render();
          win.begin_render_pass(0.2f, 0.4f, 0.6f);
          renderer.render(ImGui::GetDrawData(), win.cmd(), win.frame_slot());
          win.end_frame(capture);
          return true;
        };
        auto frames = [&](int n, bool capture_last) {
          int done = 0;
          for (int tries = 0; done < n && tries < 200; ++tries)
            if (frame(capture_last && done == n - 1, nullptr)) ++done;
          REQUIRE(done == n);
        };

        // 1. Before any update both textures are transparent: the background shows through.
        frames(3, true);
        Image shot = win.take_capture();
        REQUIRE(shot.width == 640);
        REQUIRE(shot.height == 400);
        CHECK(pos_a.x == kImagePos.x);
        CHECK(pos_a.y == kImagePos.y);
        CHECK(pos_b.x == kImagePos.x + 4 * kCell + 16);
        for (ImVec2 p : {pos_a, pos_b}) {
          const uint8_t* px = shot.at((int)p.x + 8, (int)p.y + 8);
          CHECK(std::abs(px[0] - 51) <= 1);  // 0.2 * 255
          CHECK(std::abs(px[1] - 102) <= 1);
          CHECK(std::abs(px[2] - 153) <= 1);
        }

        // 2. Host upload into one, a device-buffer copy into the other (the buffer is filled
        // on the GPU in the same command buffer, just before the copy).
        bool recorded = false;
        for (int tries = 0; !recorded && tries < 200; ++tries)
          recorded = frame(false, [&](VkCommandBuffer cb) {
            vkCmdUpdateBuffer(cb, src.handle(), 0, sizeof rgba_b, rgba_b);
            tex_b.record_copy_from(cb, src.handle(), 0);
            tex_a.upload(cb, win.frame_slot(), img_a);
          });
        REQUIRE(recorded);
        frames(3, true);
        shot = win.take_capture();
        check_cells(shot, pos_a, pattern_a, "uploaded texture");
        check_cells(shot, pos_b, pattern_b, "buffer-copied texture");
        CHECK(win.last_frame_ms() > 0.0);

        // 3. A texture created, drawn and destroyed while frames keep going.
        temp = std::make_unique<view::Texture>(ctx, renderer, 8, 8, false);
        frames(2, false);
        win.wait_frames();
        temp.reset();
        frames(2, false);

        // 4. Resize: the swapchain is recreated and captures have the new size.
        glfwSetWindowSize(win.handle(), 480, 320);
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        int fw = 0, fh = 0;
        while (std::chrono::steady_clock::now() < deadline) {
          glfwPollEvents();
          glfwGetFramebufferSize(win.handle(), &fw, &fh);
          if (fw == 480 && fh == 320) break;
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        REQUIRE(fw == 480);
        REQUIRE(fh == 320);
        recorded = false;
        for (int tries = 0; !recorded && tries < 200; ++tries)
          recorded = frame(false, [&](VkCommandBuffer cb) { tex_a.upload(cb, win.frame_slot(), img_a2); });
        REQUIRE(recorded);
        frames(3, true);
        CHECK(win.extent().width == 480);
        CHECK(win.extent().height == 320);
        shot = win.take_capture();
        REQUIRE(shot.width == 480);
        REQUIRE(shot.height == 320);
        check_cells(shot, pos_a, pattern_a2, "re-uploaded texture after resize");
        check_cells(shot, pos_b, pattern_b, "buffer-copied texture after resize");

        stop = true;
        other.join();
        CHECK(compute_submits.load() > 0);
        win.wait_frames();  // textures and renderer go next
      }
      ImGui_ImplGlfw_Shutdown();
      ImGui::DestroyContext();
      CHECK(ctx.memory_in_use().count("preview") == 0);
    }
    CHECK(ctx.memory_in_use().count("swapchain") == 0);
    CHECK(ctx.validation_messages() == 0);
  }
  // Destroying the device reports leaked objects: none may appear.
  CHECK(Context::process_validation_messages() == messages_before);
}

TEST_CASE("viewer gfx: no X display is a clear error") {
  const char* d = std::getenv("DISPLAY");
  std::string saved = d ? d : "";
  unsetenv("DISPLAY");
  std::string message;
  try {
    view::Window win(320, 200, "no display");
  } catch (const Error& e) {
    message = e.what();
  }
  if (d) setenv("DISPLAY", saved.c_str(), 1);
  INFO(message);
  CHECK(message.find("cannot open a window") != std::string::npos);
  CHECK(message.find("DISPLAY") != std::string::npos);
}

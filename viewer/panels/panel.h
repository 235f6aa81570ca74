// Panel: one teaching panel of the viewer ("what happens inside the model"), drawn in its own
// window beside the canvas. A panel reads the run on screen only through the runtime's public
// API (SdPipeline's model description, the GenerationJob's timeline) and asks the app for
// actions (a new run) through PanelActions: like the viewer itself, it never reaches inside
// the pipeline. A closed panel costs nothing: update() and draw() run only while it is open.
//
// Adding a panel: a class in viewer/panels/<name>_panel.cpp deriving from Panel, registered in
// viewer/panels/registry.cpp; `vksd view --panel <name>` opens it headless.
#pragma once
#include <imgui.h>
#include <vulkan/vulkan.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "runtime/diffusion/generation_job.h"
#include "runtime/diffusion/pipeline.h"

namespace vksd {
class Context;
}

namespace vksd::view {

class ImGuiRenderer;
class Window;

// What a panel may ask of the app.
class PanelActions {
 public:
  virtual ~PanelActions() = default;
  // Whether a new run can start now (model loaded, no run active).
  virtual bool can_run() const = 0;
  // Starts a run with these parameters, as the Generate button does (the canvas and timeline
  // follow it). Returns false (and says why in the status line) when it cannot start.
  virtual bool run(const GenerateParams& p, const JobOptions& o = {}) = 0;
  // A panel that needs the UNet's per-dispatch GPU times (GenerateParams::profile) calls this
  // with true in every update(); runs started while it does (Generate, run()) are profiled. The
  // app forgets the wish at the start of every frame, so a closed panel costs nothing.
  virtual void want_profiling(bool on) {}
  // The same for the cross-attention maps (GenerateParams::attention_maps): a panel that shows
  // them calls this with true in every update(); runs started while it does compute them.
  virtual void want_attention_maps(bool on) {}
};

// Facts a panel reports for the headless layout file (tests): key -> JSON value text.
using PanelFacts = std::vector<std::pair<std::string, std::string>>;

// Everything a panel sees in one frame.
struct PanelFrame {
  Context& ctx;
  ImGuiRenderer& renderer;
  Window& window;
  SdPipeline* pipe = nullptr;     // null while no model is loaded. While a run is active the
                                  // job thread owns it: use only config(), schedule(),
                                  // model_name(), dtype(), size_multiple() then.
  GenerationJob* job = nullptr;   // null while no model is loaded
  int shown_step = -1;            // the timeline position (index into the job's records), -1 none
  GenerateParams ui_params;       // what Generate would run with the controls as they are now
  VkCommandBuffer cmd = VK_NULL_HANDLE;  // update(): record GPU work here (outside any render pass)
  int frame_slot = 0;                    // Window::frame_slot(), for per-frame resources
  PanelActions* actions = nullptr;
};

class Panel {
 public:
  virtual ~Panel() = default;
  virtual const char* name() const = 0;   // --panel NAME: tokens, latent, schedule, attention, ...
  virtual const char* title() const = 0;  // the window title
  // Before the UI is built: record texture updates into f.cmd. Only while open.
  virtual void update(PanelFrame& f) {}
  // Inside the panel's window. Only while open.
  virtual void draw(PanelFrame& f) = 0;
  // Headless: `--panel-set NAME.KEY=VALUE` (e.g. attention.token=2). False = unknown key.
  virtual bool set(const std::string& key, const std::string& value) { return false; }
  // Headless: facts for the layout file (e.g. the selected token, a marker's x position).
  virtual void facts(PanelFacts& out) const {}
  // Whether the panel is in the middle of something it started (e.g. a run of its own): the
  // headless script waits for it before taking the screenshot.
  virtual bool busy() const { return false; }
  // Called (on the UI thread) before the textures of frames in flight may be destroyed, e.g.
  // when the model changes: drop GPU resources (after Window::wait_frames()).
  virtual void release() {}

  bool open = false;
  bool explain = true;   // show the "what am I looking at" text
  ImVec4 rect{};         // where the window was drawn, framebuffer pixels (set by the app)
  ImVec2 default_size{560, 440};

 protected:
  // The "what am I looking at" toggle and text; formulas in plain text (x_t = sqrt(abar_t) x0 + ...).
  void explanation(const char* text);
};

// A screen rectangle [a, b] in framebuffer pixels (the layout file's and the screenshot's units).
ImVec4 fb_rect(ImVec2 a, ImVec2 b);
// The last ImGui item's rectangle, in framebuffer pixels.
ImVec4 item_fb_rect();

// Tooltips only once the user has moved the mouse: a headless screenshot (a pointer resting
// wherever the X server put it) shows no tooltip over the content.
bool mouse_used();

// "[x0, y0, x1, y1]" for PanelFacts.
std::string json_rect(const ImVec4& r);

// All panels, in menu order.
std::vector<std::unique_ptr<Panel>> make_panels();
std::vector<std::string> panel_names();

}  // namespace vksd::view

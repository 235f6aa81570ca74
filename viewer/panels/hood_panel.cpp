// "Under the hood": where the time and the memory go. The UNet's last step timed per dispatch
// with Vulkan timestamp queries (GenerateParams::profile, which the app turns on for runs started
// while this panel is open: PanelActions::want_profiling), grouped by UNet block (down / mid /
// up) and by module kind (ResBlock, self-attention, cross-attention, feed-forward, ...; the
// dispatches' scopes, Graph::set_scope in runtime/nn/unet.cpp), totals per op and per stage
// (wall clock), and device memory by category (Context::memory_in_use) plus the job's timeline.
#include <imgui.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "runtime/gpu/context.h"
#include "viewer/panels/panel.h"

namespace vksd::view {

namespace {

// Module kinds, in legend order.
enum Kind { kRes, kSelf, kCross, kFF, kProj, kResample, kOther, kKinds };
const char* const kKindNames[kKinds] = {"ResBlock (convs + GroupNorm)", "self-attention", "cross-attention (text)",
                                        "feed-forward (GEGLU)", "transformer norm + proj in/out", "down/upsample",
                                        "conv_in, out, time embedding"};
const ImVec4 kKindColors[kKinds] = {
    ImVec4(0.30f, 0.55f, 0.90f, 1), ImVec4(0.95f, 0.55f, 0.15f, 1), ImVec4(0.90f, 0.25f, 0.30f, 1),
    ImVec4(0.95f, 0.85f, 0.25f, 1), ImVec4(0.70f, 0.50f, 0.30f, 1), ImVec4(0.35f, 0.75f, 0.45f, 1),
    ImVec4(0.60f, 0.60f, 0.65f, 1)};

Kind kind_of(const std::string& k) {
  if (k == "ResBlock") return kRes;
  if (k == "self-attention") return kSelf;
  if (k == "cross-attention") return kCross;
  if (k == "feed-forward") return kFF;
  if (k == "SpatialTransformer") return kProj;
  if (k == "Downsample" || k == "Upsample") return kResample;
  return kOther;
}

// A UNet block (input_blocks.N, middle_block, output_blocks.N, or the stem / head).
struct Block {
  std::string name;     // "input_blocks.1"
  std::string label;    // under the bar: "1", "mid", ...
  int section = 0;      // 0 stem (time embedding, conv_in), 1 down, 2 mid, 3 up, 4 head
  double ms[kKinds] = {};
  double total = 0;
  int dispatches = 0;
  std::vector<std::string> modules;  // scopes, in order
};

const char* const kSections[5] = {"in", "down (encoder)", "mid", "up (decoder)", "out"};

struct OpTotal {
  std::string label;
  double ms = 0, flops = 0;
  int count = 0;
};

std::string mib(double bytes) {
  char b[32];
  std::snprintf(b, sizeof b, bytes >= 1 << 20 ? "%.1f MiB" : "%.0f KiB", bytes >= 1 << 20 ? bytes / (1 << 20) : bytes / 1024);
  return b;
}

// A horizontal bar with a text right of it.
void hbar(float frac, ImU32 col, float width, const char* text) {
  ImDrawList* dl = ImGui::GetWindowDrawList();
  const ImVec2 o = ImGui::GetCursorScreenPos();
  const float h = ImGui::GetTextLineHeight();
  dl->AddRectFilled(o, ImVec2(o.x + width, o.y + h), IM_COL32(45, 45, 50, 255));
  dl->AddRectFilled(o, ImVec2(o.x + std::max(1.f, width * std::clamp(frac, 0.f, 1.f)), o.y + h), col);
  ImGui::Dummy(ImVec2(width, h));
  ImGui::SameLine();
  ImGui::TextUnformatted(text);
}

class HoodPanel : public Panel {
 public:
  HoodPanel() { default_size = ImVec2(1000, 900); }
  const char* name() const override { return "hood"; }
  const char* title() const override { return "Under the hood"; }

  void update(PanelFrame& f) override {
    // Runs started while this panel is open are profiled (the app forgets it when it closes).
    if (f.actions) f.actions->want_profiling(true);
    auto t = f.job ? f.job->last_unet_timings() : nullptr;
    if (t != timings_ || median_ != shown_median_) {
      history_ = f.job ? f.job->unet_timings() : decltype(history_){};  // this run's timed steps
      timings_ = t;
      shown_median_ = median_;
      aggregate();
    }
  }

  bool set(const std::string& key, const std::string& value) override {
    if (key != "median") return false;
    median_ = value == "1" || value == "true";
    return true;
  }

  void draw(PanelFrame& f) override {
    explanation(
        "A GPU runs a network as a sequence of dispatches: each launches one compute shader (a kernel: one convolution, "
        "one matrix product, one normalisation, one attention) over thousands of threads at once. vksd records the whole "
        "UNet as one list of dispatches and replays it every step; with this panel open each dispatch is timed by the "
        "device itself (Vulkan timestamp queries before and after it). The UNet runs once per step (twice the batch with "
        "guidance), so its time is most of the image's time. Convolutions dominate the ResBlocks: a 3x3 conv does 9 x "
        "C_in multiply-adds per output number. Self-attention compares every latent pixel with every other one (cost "
        "grows with pixels squared, so it is expensive at the full-resolution levels); cross-attention compares each "
        "pixel with only the 77 text vectors, so it is cheaper. Down in the middle the latent is small and layers are "
        "fast even with more channels. Memory: weights are the model's parameters; activations the intermediate "
        "tensors of one network pass (tensors not alive together share bytes); preview and swapchain belong to this "
        "window; staging is the buffer for uploads and downloads.");
    const DeviceInfo& di = f.ctx.info();
    ImGui::Text("Device: %s (%s, driver %s)", di.name.c_str(), di.type.c_str(), di.driver.c_str());
    if (di.type == "CPU")
      ImGui::TextColored(ImVec4(1, 0.8f, 0.4f, 1),
                         "This is a CPU Vulkan driver: the 'GPU' times below are the CPU cores running the shaders.");
    if (!di.timestamps) {
      ImGui::TextColored(ImVec4(1, 0.45f, 0.4f, 1),
                         "This device has no timestamp queries on its compute queue: per-dispatch times are not available, "
                         "only the wall-clock totals below.");
    }
    ImGui::BeginChild("hood_scroll", ImVec2(0, 0), false);
    draw_unet(f);
    ImGui::Separator();
    draw_stages(f);
    ImGui::Separator();
    draw_memory(f);
    ImGui::EndChild();
  }

  void facts(PanelFacts& out) const override {
    out.push_back({"timed_dispatches", std::to_string(ms_.size())});
    out.push_back({"timed_steps", std::to_string(median_ ? history_.size() : timings_ ? 1 : 0)});
    char b[64];
    std::snprintf(b, sizeof b, "%.4f", total_);
    out.push_back({"unet_gpu_ms", b});
    out.push_back({"blocks", std::to_string(blocks_.size())});
    out.push_back({"timestamps", timestamps_ ? "true" : "false"});
    out.push_back({"memory_categories", std::to_string(memory_categories_)});
    out.push_back({"chart", json_rect(chart_rect_)});
    if (!ms_.empty()) {
      const size_t i = (size_t)(std::max_element(ms_.begin(), ms_.end()) - ms_.begin());
      const auto& d = timings_->dispatches[i];
      std::snprintf(b, sizeof b, "%.4f", ms_[i]);
      out.push_back({"slowest", "{\"scope\": \"" + d.scope + "\", \"label\": \"" + d.label + "\", \"ms\": " + b + "}"});
    }
  }

 private:
  void aggregate() {
    blocks_.clear(), ops_.clear();
    for (auto& k : kind_ms_) k = 0;
    for (auto& k : kind_count_) k = 0;
    ms_.clear(), total_ = 0;
    if (!timings_) return;
    // Per dispatch: this step's time, or the median over the run's timed steps.
    const size_t n = timings_->dispatches.size();
    for (size_t i = 0; i < n; ++i) {
      double v = timings_->dispatches[i].ms;
      if (median_ && history_.size() > 1) {
        std::vector<double> all;
        for (const auto& h : history_)
          if (h->dispatches.size() == n) all.push_back(h->dispatches[i].ms);
        std::nth_element(all.begin(), all.begin() + (ptrdiff_t)all.size() / 2, all.end());
        v = all[all.size() / 2];
      }
      ms_.push_back(v), total_ += v;
    }
    std::map<std::string, size_t> op_index;
    for (size_t i = 0; i < n; ++i) {
      const DispatchTiming& d = timings_->dispatches[i];
      const double ms = ms_[i];
      const size_t sp = d.scope.find(' ');
      const std::string path = d.scope.substr(0, sp), kname = sp == std::string::npos ? "" : d.scope.substr(sp + 1);
      // The block: the first two components of the path for input/output blocks.
      std::string name = path, label = path;
      int section = 0;
      const auto dot = path.find('.');
      const std::string head = path.substr(0, dot);
      if (head == "input_blocks" || head == "output_blocks") {
        const auto dot2 = path.find('.', dot + 1);
        name = path.substr(0, dot2);
        label = name.substr(dot + 1);
        section = head == "input_blocks" ? 1 : 3;
        if (name == "input_blocks.0") section = 0, label = "conv_in";
      } else if (head == "middle_block") {
        name = label = "middle_block", section = 2, label = "mid";
      } else if (head == "out") {
        section = 4, label = "out";
      } else if (head == "time_embed") {
        section = 0, label = "t emb";
      } else {
        name = label = path.empty() ? "(unnamed)" : path;
      }
      if (blocks_.empty() || blocks_.back().name != name) {
        blocks_.push_back({});
        blocks_.back().name = name, blocks_.back().label = label, blocks_.back().section = section;
      }
      Block& b = blocks_.back();
      const Kind k = kind_of(kname);
      b.ms[k] += ms, b.total += ms, b.dispatches++;
      if (b.modules.empty() || b.modules.back() != d.scope) b.modules.push_back(d.scope);
      kind_ms_[k] += ms, kind_count_[k]++;
      auto it = op_index.find(d.label);
      if (it == op_index.end()) it = op_index.emplace(d.label, ops_.size()).first, ops_.push_back({d.label});
      OpTotal& o = ops_[it->second];
      o.ms += ms, o.flops += d.flops, o.count++;
    }
    std::sort(ops_.begin(), ops_.end(), [](const OpTotal& a, const OpTotal& b) { return a.ms > b.ms; });
  }

  void draw_unet(PanelFrame& f) {
    timestamps_ = f.ctx.info().timestamps;
    ImGui::TextUnformatted("UNet: GPU time of every dispatch of one step, per block (bars stacked by module kind)");
    if (!f.job || f.job->steps_recorded() == 0 || !timings_) {
      chart_rect_ = ImVec4();
      const bool ran = f.job && f.job->steps_recorded() > 0;
      ImGui::TextWrapped("%s", ran && !f.job->params().profile
                                   ? "The run on screen was started while this panel was closed, so it was not timed. Press "
                                     "Generate: runs started with this panel open time every dispatch."
                                   : "Press Generate: with this panel open every dispatch of the UNet is timed.");
      return;
    }
    const UNetTimings& t = *timings_;
    if (t.dispatches.empty()) {
      ImGui::TextWrapped("No timestamps from this device.");
      return;
    }
    const double total = total_;
    auto rec = f.job->record_ptr(t.record);
    ImGui::Checkbox("median of the run's steps", &median_);
    if (ImGui::IsItemHovered() && mouse_used())
      ImGui::SetTooltip("Each bar: the median of every dispatch's time over this run's timed steps, instead of the last\n"
                        "step's alone; steadier when other programs share the device (a CPU driver shares the cores).");
    if (median_ && history_.size() > 1)
      ImGui::Text("median over the %zu timed steps of this run (up to step %d of %d): %zu dispatches, %.2f ms on the device%s",
                  history_.size(), t.index + 1, rec ? rec->count : 0, t.dispatches.size(), total,
                  f.job->params().cfg_scale != 1.0 ? " (batch 2: prompt + negative)" : "");
    else
      ImGui::Text("step %d of %d (t = %.0f): %zu dispatches, %.2f ms on the device in total%s", t.index + 1, rec ? rec->count : 0,
                  rec ? rec->t : 0.0, t.dispatches.size(), total,
                  f.job->params().cfg_scale != 1.0 ? " (batch 2: prompt and negative prompt together)" : "");
    ImGui::TextDisabled("timed alone: a barrier separates every dispatch while profiling, so the sum is a little more than an "
                        "unprofiled step takes");

    // Stacked bars, one per block, grouped by section.
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const float axis = 64, height = 150, line = ImGui::GetTextLineHeight();
    const float avail = ImGui::GetContentRegionAvail().x - axis - 8;
    int gaps = 0;
    for (size_t i = 1; i < blocks_.size(); ++i) gaps += blocks_[i].section != blocks_[i - 1].section;
    const float gap = 14;
    const float slot = std::max(8.f, (avail - gaps * gap) / std::max<size_t>(1, blocks_.size()));
    double max_ms = 0;
    for (const auto& b : blocks_) max_ms = std::max(max_ms, b.total);
    if (max_ms <= 0) max_ms = 1;
    const ImVec2 o = ImGui::GetCursorScreenPos();
    const ImVec2 c0(o.x + axis, o.y + 4);
    ImGui::InvisibleButton("unet_chart", ImVec2(avail + axis, height + 2 * line + 10));
    const bool hovered = ImGui::IsItemHovered() && mouse_used();
    const ImVec2 mouse = ImGui::GetIO().MousePos;
    // Y axis in ms.
    for (int g = 0; g <= 4; ++g) {
      const float y = c0.y + height - height * g / 4.f;
      dl->AddLine(ImVec2(c0.x, y), ImVec2(c0.x + avail, y), g == 0 ? IM_COL32(150, 150, 150, 255) : IM_COL32(70, 70, 75, 255));
      char b[32];
      std::snprintf(b, sizeof b, g == 4 ? "%.1f ms" : "%.1f", max_ms * g / 4.0);
      dl->AddText(ImVec2(o.x + axis - 6 - ImGui::CalcTextSize(b).x, y - line / 2), IM_COL32(170, 170, 170, 255), b);
    }
    float x = c0.x;
    int section = -1;
    float section_x0 = x;
    const Block* hover = nullptr;
    auto section_label = [&](int s, float x0, float x1) {
      if (s < 0) return;
      const char* l = kSections[s];
      if (s == 2 || s == 4) return;  // one bar, already labelled "mid" / "out"
      const float w = ImGui::CalcTextSize(l).x;
      const float y = c0.y + height + line + 6;
      dl->AddLine(ImVec2(x0, y), ImVec2(x1 - 2, y), IM_COL32(140, 140, 150, 255));
      if (w < x1 - x0 + 20) dl->AddText(ImVec2((x0 + x1) / 2 - w / 2, y + 1), IM_COL32(220, 220, 220, 255), l);
    };
    for (const auto& b : blocks_) {
      if (b.section != section) {
        if (section >= 0) {
          section_label(section, section_x0, x);
          x += gap;
        }
        section = b.section, section_x0 = x;
      }
      float y = c0.y + height;
      const float bw = std::max(4.f, slot - 4);
      for (int k = 0; k < kKinds; ++k) {
        if (b.ms[k] <= 0) continue;
        const float h = (float)(b.ms[k] / max_ms * height);
        dl->AddRectFilled(ImVec2(x + 2, y - h), ImVec2(x + 2 + bw, y), ImGui::ColorConvertFloat4ToU32(kKindColors[k]));
        y -= h;
      }
      const float lw = ImGui::CalcTextSize(b.label.c_str()).x;
      if (lw <= slot + 6) dl->AddText(ImVec2(x + 2 + bw / 2 - lw / 2, c0.y + height + 2), IM_COL32(200, 200, 200, 255), b.label.c_str());
      if (hovered && mouse.x >= x && mouse.x < x + slot) hover = &b;
      x += slot;
    }
    section_label(section, section_x0, x);
    chart_rect_ = fb_rect(o, ImVec2(x, c0.y + height));
    if (hover) {
      ImGui::BeginTooltip();
      ImGui::Text("%s: %.3f ms, %d dispatches", hover->name.c_str(), hover->total, hover->dispatches);
      for (int k = 0; k < kKinds; ++k)
        if (hover->ms[k] > 0) ImGui::TextColored(kKindColors[k], "  %s: %.3f ms", kKindNames[k], hover->ms[k]);
      for (const auto& m : hover->modules) ImGui::TextDisabled("  %s", m.c_str());
      ImGui::EndTooltip();
    }

    // Legend with totals per kind, and the top ops.
    const float col = ImGui::GetContentRegionAvail().x * 0.5f;
    ImGui::BeginGroup();
    ImGui::TextUnformatted("by module kind (whole step)");
    for (int k = 0; k < kKinds; ++k) {
      if (kind_count_[k] == 0) continue;
      char b[128];
      std::snprintf(b, sizeof b, "%5.1f%%  %.2f ms  %-30s (%d)", 100.0 * kind_ms_[k] / total, kind_ms_[k], kKindNames[k], kind_count_[k]);
      hbar((float)(kind_ms_[k] / total), ImGui::ColorConvertFloat4ToU32(kKindColors[k]), 90, b);
    }
    ImGui::EndGroup();
    ImGui::SameLine(col);
    ImGui::BeginGroup();
    ImGui::TextUnformatted("by kernel (dispatch label)");
    for (size_t i = 0; i < ops_.size() && i < 8; ++i) {
      const OpTotal& op = ops_[i];
      char b[128];
      if (op.flops > 0)
        std::snprintf(b, sizeof b, "%5.1f%%  %.2f ms  %-19s x%-3d %.1f GFLOP/s", 100.0 * op.ms / total, op.ms, op.label.c_str(), op.count,
                      op.flops / (op.ms * 1e6));
      else
        std::snprintf(b, sizeof b, "%5.1f%%  %.2f ms  %-19s x%d", 100.0 * op.ms / total, op.ms, op.label.c_str(), op.count);
      hbar((float)(op.ms / total), IM_COL32(150, 150, 170, 255), 90, b);
    }
    if (ops_.size() > 8) ImGui::TextDisabled("... and %zu more kernels", ops_.size() - 8);
    ImGui::EndGroup();
  }

  void draw_stages(PanelFrame& f) {
    ImGui::TextUnformatted("Where one image's time goes (wall clock, this run)");
    if (!f.job || f.job->steps_recorded() == 0) {
      ImGui::TextDisabled("no run yet");
      return;
    }
    auto text = f.job->text();
    auto res = f.job->result();
    const int n = f.job->steps_recorded();
    double sample_ms = 0;
    for (int k = 0; k < n; ++k)
      if (auto r = f.job->record_ptr(k)) sample_ms += r->step_ms;
    struct Row {
      const char* what;
      double ms;
      bool known;
    };
    char steps[96];
    std::snprintf(steps, sizeof steps, "UNet + sampler, %d step%s", n, n == 1 ? "" : "s");
    const Row rows[] = {{"text encoder (both prompts)", text ? text->text_ms : 0, (bool)text},
                        {steps, sample_ms, true},
                        {"VAE decoder (latent -> image)", res ? res->decode_ms : 0, (bool)res}};
    double total = res ? res->total_ms : 0;
    if (!res)
      for (const Row& r : rows) total += r.ms;
    for (const Row& r : rows) {
      char b[160];
      if (r.known) std::snprintf(b, sizeof b, "%8.1f ms  %5.1f%%  %s", r.ms, total > 0 ? 100 * r.ms / total : 0, r.what);
      else std::snprintf(b, sizeof b, "      (not yet)  %s", r.what);
      hbar(total > 0 ? (float)(r.ms / total) : 0, IM_COL32(110, 160, 220, 255), 160, b);
    }
    if (res) ImGui::TextDisabled("total %.1f ms from Generate to the image (the rest: loading the UNet, the initial noise)", res->total_ms);
    ImGui::PushStyleColor(ImGuiCol_Text, ImGui::GetStyle().Colors[ImGuiCol_TextDisabled]);
    ImGui::TextWrapped("A network's first use loads its weights and builds its graph (shader pipelines included) inside its "
                       "stage; generate again to see the steady-state times.");
    ImGui::PopStyleColor();
    if (timings_ && !timings_->dispatches.empty()) {
      if (auto r = f.job->record_ptr(timings_->record))
        ImGui::TextDisabled("the last timed step: %.2f ms of dispatches inside %.2f ms of wall clock (uploads, downloads, the sampler)",
                            timings_->total_ms(), r->step_ms);
    }
  }

  void draw_memory(PanelFrame& f) {
    ImGui::TextUnformatted("Device memory in use, by category");
    const auto mem = f.ctx.memory_in_use();
    memory_categories_ = (int)mem.size();
    uint64_t total = 0, largest = 1;
    for (const auto& [k, v] : mem) total += v, largest = std::max<uint64_t>(largest, v);
    for (const auto& [k, v] : mem) {
      char b[128];
      std::snprintf(b, sizeof b, "%10s  %s", mib((double)v).c_str(), k.c_str());
      hbar((float)v / (float)largest, IM_COL32(120, 190, 140, 255), 160, b);
    }
    ImGui::TextDisabled("total %s on %s", mib((double)total).c_str(), f.ctx.info().name.c_str());
    if (f.job) {
      const size_t host = f.job->timeline_bytes();
      auto text = f.job->text();
      ImGui::Text("Host memory of this run's timeline: %s for %d steps (every step's latents kept for scrubbing)%s",
                  mib((double)host).c_str(), f.job->steps_recorded(),
                  text ? (" + " + mib((double)text->bytes()) + " text vectors").c_str() : "");
    }
  }

  std::shared_ptr<const UNetTimings> timings_;
  std::vector<std::shared_ptr<const UNetTimings>> history_;  // this run's timed steps
  bool median_ = false, shown_median_ = false;
  std::vector<double> ms_;  // per dispatch, as shown (last step or median)
  double total_ = 0;
  std::vector<Block> blocks_;
  std::vector<OpTotal> ops_;
  double kind_ms_[kKinds] = {};
  int kind_count_[kKinds] = {};
  bool timestamps_ = false;
  int memory_categories_ = 0;
  ImVec4 chart_rect_{};
};

}  // namespace

std::unique_ptr<Panel> make_hood_panel() { return std::make_unique<HoodPanel>(); }

}  // namespace vksd::view

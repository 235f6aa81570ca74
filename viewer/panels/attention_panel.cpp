// "Where words go": the UNet's cross-attention maps. For every pixel of a cross-attention layer's
// grid, softmax(Q Kᵀ / sqrt(d)) over the prompt's tokens (mean over heads) says how much of that
// pixel's update is read from each token; one token's row, laid out as an image, is where that
// word acts. Shown over x̂0 as the canvas shows it, for one layer, a level's mean or the mean of
// all layers, at the shown step and as a row over the steps. The maps are computed only by runs
// started while this panel is open (PanelActions::want_attention_maps ->
// GenerateParams::attention_maps); the colour maps are made on the GPU (HeatmapPreview).
#include <imgui.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "runtime/gpu/context.h"
#include "runtime/diffusion/preview.h"
#include "runtime/text/prompt.h"
#include "runtime/text/tokenizer.h"
#include "viewer/panels/panel.h"
#include "viewer/texture.h"
#include "viewer/window.h"

namespace vksd::view {

namespace {

constexpr int kThumbs = 10;           // the row over the steps
constexpr int kMaps = 2 + kThumbs;    // heatmaps per frame: overlay, plain map, thumbnails
constexpr float kOverlayAlpha = 0.85f;
constexpr ColorMap kColors = ColorMap::Viridis;


std::string json_str(const std::string& s) {
  std::string r = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') r += '\\';
    if ((unsigned char)c < 0x20) continue;
    r += c;
  }
  return r + "\"";
}

// One prompt token as the panel offers it: its row in the context and its text.
struct TokenButton {
  int row = 0;
  std::string text;
};

// The prompt's tokens as the pipeline feeds them (tokenize_weighted, 77 per chunk): <start>, the
// BPE pieces, <end> of the first chunk, then the pieces of further chunks.
std::vector<TokenButton> prompt_tokens(const Tokenizer& tok, const std::string& prompt) {
  std::vector<TokenButton> r;
  const WeightedPrompt wp = tokenize_weighted(tok, prompt);
  const int L = WeightedPrompt::kChunkLength;
  for (int c = 0; c < wp.chunk_count; ++c) {
    const int32_t* ids = wp.chunk_ids(c);
    for (int i = 0; i < L; ++i) {
      const int32_t id = ids[i];
      if (id == tok.bos_id()) {
        if (c == 0) r.push_back({c * L + i, "<start>"});
        continue;
      }
      if (id == tok.eos_id()) {
        if (c == 0) r.push_back({c * L + i, "<end>"});
        break;
      }
      std::string t = tok.token_text(id);
      if (t.size() >= 4 && t.compare(t.size() - 4, 4, "</w>") == 0) t.resize(t.size() - 4);
      r.push_back({c * L + i, t});
    }
  }
  return r;
}

// Adds token row `j` of map m, upsampled (nearest) to h x w, times `weight`, into out.
void add_upsampled(const AttentionMap& m, int j, int h, int w, float weight, std::vector<float>& out) {
  if (j < 0 || j >= m.tokens || m.height <= 0 || m.width <= 0) return;
  const float* src = m.token_map(j);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      out[(size_t)y * w + x] += weight * src[(size_t)(y * m.height / h) * m.width + (size_t)(x * m.width / w)];
}

class AttentionPanel : public Panel {
 public:
  AttentionPanel() { default_size = ImVec2(780, 900); }
  const char* name() const override { return "attention"; }
  const char* title() const override { return "Where words go: cross-attention"; }

  bool set(const std::string& key, const std::string& value) override {
    if (key == "token") {
      token_ = std::stoi(value);
      token_from_flag_ = true;
    } else if (key == "block") {
      block_ = value;
    } else {
      return false;
    }
    return true;
  }

  void facts(PanelFacts& out) const override {
    out.push_back({"token", std::to_string(token_)});
    out.push_back({"token_text", json_str(token_text_)});
    out.push_back({"block", json_str(block_)});
    out.push_back({"maps", has_maps_ ? "true" : "false"});
    out.push_back({"map", json_rect(overlay_rect_)});
    out.push_back({"heat", json_rect(heat_rect_)});
    out.push_back({"map_max", std::to_string(hi_)});
    out.push_back({"steps_row", std::to_string(thumb_count_)});
  }

  void release() override {
    heat_.reset(), latent_.reset();
    overlay_tex_.reset(), heat_tex_.reset(), x0_tex_.reset(), decoded_tex_.reset();
    thumb_tex_.clear();
    lh_ = lw_ = 0;
    key_rec_ = nullptr;
  }

  void update(PanelFrame& f) override {
    if (f.actions) f.actions->want_attention_maps(true);  // runs started while open compute the maps
    rec_ = nullptr;
    has_maps_ = false;
    if (!f.job || !f.pipe || f.shown_step < 0) return;
    auto rec = f.job->record_ptr(f.shown_step);
    if (!rec) return;
    rec_ = rec;
    if (rec->attention_levels.empty()) return;
    has_maps_ = true;

    const GenerateParams params = f.job->params();
    if (params.prompt != prompt_ || tokens_.empty()) {
      prompt_ = params.prompt;
      tokens_ = prompt_tokens(f.pipe->tokenizer(), prompt_);
      if (!token_from_flag_) token_ = tokens_.size() > 1 ? tokens_[1].row : 0;  // the first word
    }
    token_ = std::clamp(token_, 0, rec->attention_levels[0].tokens - 1);
    char row[24];
    std::snprintf(row, sizeof row, "#%d", token_);
    token_text_ = row;
    for (auto& t : tokens_)
      if (t.row == token_) token_text_ = t.text;

    ensure(f, rec->channels, rec->height, rec->width);

    // The picture under the map: x̂0 as the canvas shows it (the final image at the last step of
    // a finished run, a VAE preview where there is one, else the latent preview of x̂0).
    const Image* decoded = nullptr;
    std::optional<GenerateResult> res;
    const void* decoded_key = nullptr;
    if (f.job->state() == JobState::Done && f.shown_step == f.job->steps_recorded() - 1) {
      res = f.job->result();
      if (res) decoded = &res->image, decoded_key = f.job->record_ptr(0).get();
    }
    if (!decoded && rec->vae_preview) decoded = &*rec->vae_preview, decoded_key = rec.get();
    if (decoded) {
      if (!decoded_tex_ || decoded_tex_->width() != decoded->width || decoded_tex_->height() != decoded->height) {
        f.window.wait_frames();
        decoded_tex_ = std::make_unique<Texture>(f.ctx, f.renderer, decoded->width, decoded->height, true);
        decoded_key_ = nullptr;
      }
      if (decoded_key_ != decoded_key) {
        decoded_tex_->upload(f.cmd, f.frame_slot, *decoded);
        decoded_key_ = decoded_key;
      }
    }
    show_decoded_ = decoded != nullptr;

    const int n = f.job->steps_recorded();
    if (auto newest = f.job->record_ptr(n - 1); newest && !newest->attention.empty()) {
      layers_.clear();
      for (auto& m : newest->attention) layers_.push_back({m.block, m.level, m.height, m.width});
    }
    if (key_rec_ == rec.get() && key_token_ == token_ && key_block_ == block_ && key_steps_ == n) return;
    key_rec_ = rec.get(), key_token_ = token_, key_block_ = block_, key_steps_ = n;

    const int base = f.frame_slot * kMaps;
    if (!show_decoded_) {
      latent_->record(f.cmd, f.frame_slot, rec->denoised.data(), f.pipe->config().preview, 1.f);
      x0_tex_->record_copy_from(f.cmd, latent_->output_buffer(), latent_->output_offset(f.frame_slot));
    }
    // The shown step: over x̂0 (transparent where the token gets nothing) and on its own.
    map_ = token_map(*rec, note_);
    // The colours span the map's own range (min .. max), so that where the word acts stands out
    // even when its share hardly varies; the numbers are printed beside the colour bar.
    lo_ = *std::min_element(map_.begin(), map_.end());
    hi_ = std::max(lo_ + 1e-6f, *std::max_element(map_.begin(), map_.end()));
    double sum = 0;
    for (float v : map_) sum += v;
    mean_ = (float)(sum / (double)map_.size());
    heat_->record(f.cmd, base, map_.data(), lo_, hi_, kColors, kOverlayAlpha);
    overlay_tex_->record_copy_from(f.cmd, heat_->output_buffer(), heat_->output_offset(base));
    heat_->record(f.cmd, base + 1, map_.data(), lo_, hi_, kColors);
    heat_tex_->record_copy_from(f.cmd, heat_->output_buffer(), heat_->output_offset(base + 1));

    // Over time: up to kThumbs steps spread over the run, on one common scale.
    thumb_steps_.clear();
    const int count = std::min(n, kThumbs);
    for (int k = 0; k < count; ++k) thumb_steps_.push_back(count == 1 ? n - 1 : (int)std::lround((double)k * (n - 1) / (count - 1)));
    std::vector<std::vector<float>> thumbs;
    thumb_lo_ = 1.f, thumb_hi_ = 0.f;
    thumb_notes_.assign(thumb_steps_.size(), false);
    for (size_t k = 0; k < thumb_steps_.size(); ++k) {
      auto r = f.job->record_ptr(thumb_steps_[k]);
      std::string note;
      thumbs.push_back(r && !r->attention_levels.empty() ? token_map(*r, note) : std::vector<float>((size_t)lh_ * lw_, 0.f));
      thumb_notes_[k] = !note.empty();
      thumb_lo_ = std::min(thumb_lo_, *std::min_element(thumbs.back().begin(), thumbs.back().end()));
      thumb_hi_ = std::max(thumb_hi_, *std::max_element(thumbs.back().begin(), thumbs.back().end()));
    }
    for (size_t k = 0; k < thumbs.size(); ++k) {
      heat_->record(f.cmd, base + 2 + (int)k, thumbs[k].data(), thumb_lo_, std::max(thumb_hi_, thumb_lo_ + 1e-6f), kColors);
      thumb_tex_[k]->record_copy_from(f.cmd, heat_->output_buffer(), heat_->output_offset(base + 2 + (int)k));
    }
    thumb_count_ = (int)thumbs.size();

    // Each token's share of the attention (mean over the pixels) in the selected layer(s).
    const int saved = token_;
    std::string ignored;
    shares_.assign(tokens_.size(), 0.f);
    for (size_t i = 0; i < tokens_.size(); ++i) {
      token_ = tokens_[i].row;
      const auto m = token_map(*rec, ignored);
      double sum = 0;
      for (float v : m) sum += v;
      shares_[i] = (float)(sum / (double)m.size());
    }
    token_ = saved;
  }

  void draw(PanelFrame& f) override {
    explanation(
        "In every transformer block of the UNet, cross-attention lets each pixel of the latent read from the "
        "prompt. For pixel i and token j:\n"
        "    P[i, j] = softmax_j( q_i . k_j / sqrt(d) ),   q_i = W_q x_i (the pixel),  k_j = W_k c_j (the token)\n"
        "averaged over the attention heads. For each pixel the P over the 77 positions of the text (<start>, the "
        "words, <end> and the padding after it) add up to 1: it is how that pixel's update is shared among them. "
        "One token's P over all pixels, drawn as an image, is where that word acts. Click a token; choose a layer "
        "(input blocks = encoder, output blocks = decoder; level 0 is the full latent grid, each level halves it) "
        "or the mean of all. Much of the attention goes to positions that carry no word (<start>, <end>, "
        "padding): the bars below show the shares. Colours span the map's own range, min (dark) to max (yellow).");
    if (!f.job || f.job->steps_recorded() == 0 || !rec_) {
      ImGui::TextWrapped("Press Generate: runs started while this panel is open compute the maps.");
      return;
    }
    if (!has_maps_) {
      ImGui::TextWrapped(
          "This run was made without attention maps (they cost one small extra kernel per layer, so they are only "
          "computed while this panel is open).");
      const bool can = f.actions && f.actions->can_run();
      ImGui::BeginDisabled(!can);
      if (ImGui::Button("Run again with attention maps")) f.actions->run(f.job->params(), {});
      ImGui::EndDisabled();
      return;
    }
    const StepRecord& r = *rec_;

    // Token buttons, wrapped.
    ImGui::TextUnformatted("token:");
    const float right = ImGui::GetWindowPos().x + ImGui::GetWindowContentRegionMax().x;
    for (size_t i = 0; i < tokens_.size(); ++i) {
      const auto& t = tokens_[i];
      const bool sel = t.row == token_;
      const float w = ImGui::CalcTextSize(t.text.c_str()).x + ImGui::GetStyle().FramePadding.x * 2;
      ImGui::SameLine();
      if (ImGui::GetCursorScreenPos().x + w > right) ImGui::NewLine();
      if (sel) ImGui::PushStyleColor(ImGuiCol_Button, ImVec4(0.85f, 0.55f, 0.1f, 1.f));
      ImGui::PushID((int)i);
      if (ImGui::Button(t.text.c_str())) token_ = t.row;
      if (i < shares_.size() && ImGui::IsItemHovered())
        ImGui::SetTooltip("row %d of the context: %.1f%% of the attention", t.row, 100.0 * shares_[i]);
      ImGui::PopID();
      if (sel) ImGui::PopStyleColor();
    }

    // Layer selector.
    std::vector<std::pair<std::string, std::string>> items;  // (key, label)
    int layers = 0;
    for (auto& m : r.attention_levels) layers += m.layers;
    items.push_back({"all", "mean of all " + std::to_string(layers) + " layers"});
    for (auto& m : r.attention_levels)
      items.push_back({m.block, m.block + " mean (" + std::to_string(m.height) + "x" + std::to_string(m.width) + ", " +
                                    std::to_string(m.layers) + (m.layers == 1 ? " layer)" : " layers)")});
    for (auto& m : layers_)
      items.push_back({m.block, m.block + " (level " + std::to_string(m.level) + ", " + std::to_string(m.height) + "x" +
                                    std::to_string(m.width) + ")"});
    std::string current = block_;
    for (auto& it : items)
      if (it.first == block_) current = it.second;
    ImGui::SetNextItemWidth(300);
    if (ImGui::BeginCombo("layer", current.c_str())) {
      for (auto& it : items)
        if (ImGui::Selectable(it.second.c_str(), it.first == block_)) block_ = it.first;
      ImGui::EndCombo();
    }
    ImGui::SameLine();
    if (ImGui::Button("mean of all")) block_ = "all";

    ImGui::Text("step %d of %d, t = %.0f: '%s' gets %.1f%% of the attention on average, at most %.1f%% at one pixel", r.index + 1,
                r.count, r.t, token_text_.c_str(), 100.0 * mean_, 100.0 * hi_);
    if (!note_.empty()) ImGui::TextDisabled("%s", note_.c_str());

    // The map over x̂0, and alone.
    const float avail = ImGui::GetContentRegionAvail().x;
    const float side = std::clamp((avail - 80.f) / 2.f, 96.f, 300.f);
    const ImVec2 size(side, side * (float)lh_ / (float)lw_);
    ImGui::BeginGroup();
    ImGui::Text("'%s' over x0-hat", token_text_.c_str());
    const ImTextureID bg = show_decoded_ ? decoded_tex_->id() : x0_tex_->id();
    ImGui::Image(bg, size);
    const ImVec2 a = ImGui::GetItemRectMin(), b = ImGui::GetItemRectMax();
    ImGui::GetWindowDrawList()->AddImage(overlay_tex_->id(), a, b);
    overlay_rect_ = item_fb_rect();
    ImGui::EndGroup();
    ImGui::SameLine();
    ImGui::BeginGroup();
    ImGui::Text("the map alone (%dx%d grid)", map_w_, map_h_);
    ImGui::Image(heat_tex_->id(), size);
    heat_rect_ = item_fb_rect();
    ImGui::EndGroup();
    ImGui::SameLine();
    color_bar(ImVec2(18.f, size.y), lo_, hi_);
    shares_line();

    // Over the steps.
    ImGui::Separator();
    ImGui::Text("'%s' over the steps (one scale for all, %.1f%% .. %.1f%%)%s", token_text_.c_str(), 100.0 * thumb_lo_,
                100.0 * thumb_hi_,
                std::any_of(thumb_notes_.begin(), thumb_notes_.end(), [](bool b) { return b; })
                    ? "   * = older step: its level's mean (per-layer maps are kept for the newest steps)"
                    : "");
    const float thumb = std::clamp((ImGui::GetContentRegionAvail().x - 10.f * kThumbs) / kThumbs, 32.f, 72.f);
    for (int k = 0; k < thumb_count_; ++k) {
      if (k) ImGui::SameLine();
      ImGui::BeginGroup();
      ImGui::Image(thumb_tex_[(size_t)k]->id(), ImVec2(thumb, thumb * (float)lh_ / (float)lw_));
      if (thumb_steps_[(size_t)k] == f.shown_step) {
        const ImVec2 ta = ImGui::GetItemRectMin(), tb = ImGui::GetItemRectMax();
        ImGui::GetWindowDrawList()->AddRect(ImVec2(ta.x - 2, ta.y - 2), ImVec2(tb.x + 2, tb.y + 2), IM_COL32(255, 160, 40, 255), 0.f, 0, 2.f);
      }
      auto sr = f.job->record_ptr(thumb_steps_[(size_t)k]);
      ImGui::Text("%d%s", sr ? sr->index + 1 : 0, thumb_notes_[(size_t)k] ? "*" : "");
      ImGui::EndGroup();
    }
  }

 private:
  // The selected token's map of record r at latent resolution; `note` says when it had to fall
  // back (an older step without per-layer maps).
  std::vector<float> token_map(const StepRecord& r, std::string& note) {
    note.clear();
    std::vector<float> out((size_t)lh_ * lw_, 0.f);
    const AttentionMap* one = nullptr;
    if (block_ == "all") {
      int layers = 0;
      for (auto& m : r.attention_levels) layers += m.layers;
      for (auto& m : r.attention_levels) add_upsampled(m, token_, lh_, lw_, (float)m.layers / (float)layers, out);
      map_w_ = lw_, map_h_ = lh_;
      if (&r == rec_.get()) {
        map_w_ = r.attention_levels.empty() ? lw_ : r.attention_levels[0].width;
        map_h_ = r.attention_levels.empty() ? lh_ : r.attention_levels[0].height;
      }
      return out;
    }
    for (auto& m : r.attention_levels)
      if (m.block == block_) one = &m;
    for (auto& m : r.attention)
      if (m.block == block_) one = &m;
    if (!one) {
      // A layer whose per-layer map this (older) step no longer has: its level's mean.
      int level = -1;
      for (auto& m : layers_)
        if (m.block == block_) level = m.level;
      for (auto& m : r.attention_levels)
        if (m.level == level) one = &m;
      if (one) note = "step " + std::to_string(r.index + 1) + " keeps only per-level means: showing " + one->block + "'s";
    }
    if (!one) {
      note = "no layer '" + block_ + "': showing the mean of all";
      block_ = "all";
      return token_map(r, note);
    }
    add_upsampled(*one, token_, lh_, lw_, 1.f, out);
    if (&r == rec_.get()) map_w_ = one->width, map_h_ = one->height;
    return out;
  }

  void ensure(PanelFrame& f, int channels, int lh, int lw) {
    if (heat_ && lh == lh_ && lw == lw_ && channels == channels_) return;
    f.window.wait_frames();
    release();
    lh_ = lh, lw_ = lw, channels_ = channels;
    heat_ = std::make_unique<HeatmapPreview>(f.ctx, lh, lw, Window::kFramesInFlight * kMaps);
    latent_ = std::make_unique<LatentPreview>(f.ctx, channels, lh, lw, Window::kFramesInFlight);
    // The maps and x̂0's latent preview are drawn smoothed (bilinear): a latent grid of 8x8 under
    // a 320-pixel square; "the map alone" stays in blocks, one per grid cell.
    overlay_tex_ = std::make_unique<Texture>(f.ctx, f.renderer, lw, lh, false);
    heat_tex_ = std::make_unique<Texture>(f.ctx, f.renderer, lw, lh, true);
    x0_tex_ = std::make_unique<Texture>(f.ctx, f.renderer, lw, lh, false);
    for (int k = 0; k < kThumbs; ++k) thumb_tex_.push_back(std::make_unique<Texture>(f.ctx, f.renderer, lw, lh, true));
    key_rec_ = nullptr;
  }

  // "Who gets the attention": each prompt token's share as a bar, and the rest (padding).
  void shares_line() {
    if (shares_.empty()) return;
    ImGui::TextUnformatted("share of the attention (mean over the pixels):");
    ImDrawList* dl = ImGui::GetWindowDrawList();
    float rest = 1.f;
    const float bar_w = 260.f, h = ImGui::GetTextLineHeight();
    auto row = [&](const char* label, float share, bool sel) {
      ImGui::TextUnformatted(label);
      ImGui::SameLine(110);
      const ImVec2 p = ImGui::GetCursorScreenPos();
      dl->AddRectFilled(p, ImVec2(p.x + bar_w, p.y + h), IM_COL32(60, 60, 70, 255));
      dl->AddRectFilled(p, ImVec2(p.x + bar_w * std::clamp(share, 0.f, 1.f), p.y + h),
                        sel ? IM_COL32(220, 140, 25, 255) : IM_COL32(110, 160, 220, 255));
      ImGui::Dummy(ImVec2(bar_w, h));
      ImGui::SameLine();
      ImGui::Text("%5.1f%%", 100.0 * share);
    };
    for (size_t i = 0; i < tokens_.size() && i < shares_.size(); ++i) {
      row(tokens_[i].text.c_str(), shares_[i], tokens_[i].row == token_);
      rest -= shares_[i];
    }
    const int padding = (rec_ && !rec_->attention_levels.empty() ? rec_->attention_levels[0].tokens : 77) -
                        (int)tokens_.size();
    char label[48];
    std::snprintf(label, sizeof label, "%d x padding", padding);
    row(label, std::max(0.f, rest), false);
  }

  void color_bar(ImVec2 size, float lo, float hi) {
    ImGui::BeginGroup();
    ImGui::Text("%.1f%%", 100.0 * hi);
    const ImVec2 p = ImGui::GetCursorScreenPos();
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const int steps = 64;
    for (int i = 0; i < steps; ++i) {
      uint8_t rgb[3];
      heatmap_color(1.f - (float)i / (steps - 1), kColors, rgb);
      const float y0 = p.y + size.y * (float)i / steps, y1 = p.y + size.y * (float)(i + 1) / steps;
      dl->AddRectFilled(ImVec2(p.x, y0), ImVec2(p.x + size.x, y1), IM_COL32(rgb[0], rgb[1], rgb[2], 255));
    }
    ImGui::Dummy(size);
    ImGui::Text("%.1f%%", 100.0 * lo);
    ImGui::EndGroup();
  }

  // Settings.
  int token_ = 1;
  bool token_from_flag_ = false;
  std::string block_ = "all";

  // The shown record and what was computed from it.
  std::shared_ptr<const StepRecord> rec_;
  bool has_maps_ = false;
  std::string prompt_, token_text_, note_;
  std::vector<TokenButton> tokens_;
  // The layers (from the newest step, which always keeps its per-layer maps), in graph order.
  struct Layer {
    std::string block;
    int level = 0, height = 0, width = 0;
  };
  std::vector<Layer> layers_;
  std::vector<float> map_;
  float lo_ = 0, hi_ = 0, mean_ = 0, thumb_lo_ = 0, thumb_hi_ = 0;
  std::vector<float> shares_;  // per token button
  int map_w_ = 0, map_h_ = 0;
  std::vector<int> thumb_steps_;
  std::vector<bool> thumb_notes_;
  int thumb_count_ = 0;
  const StepRecord* key_rec_ = nullptr;
  int key_token_ = -1, key_steps_ = -1;
  std::string key_block_;
  bool show_decoded_ = false;
  const void* decoded_key_ = nullptr;

  // GPU side.
  int lh_ = 0, lw_ = 0, channels_ = 0;
  std::unique_ptr<HeatmapPreview> heat_;
  std::unique_ptr<LatentPreview> latent_;
  std::unique_ptr<Texture> overlay_tex_, heat_tex_, x0_tex_, decoded_tex_;
  std::vector<std::unique_ptr<Texture>> thumb_tex_;

  ImVec4 overlay_rect_{}, heat_rect_{};
};

}  // namespace

std::unique_ptr<Panel> make_attention_panel() { return std::make_unique<AttentionPanel>(); }

}  // namespace vksd::view

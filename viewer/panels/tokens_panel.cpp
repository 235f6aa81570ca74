// "Text -> tokens -> vectors": the prompt as CLIP sees it. The text in the prompt box is
// tokenized as you type (SdPipeline::tokenize: cheap, const, safe while a run is active): BPE
// pieces and their ids, emphasis weights, the 77-token window of BOS + 75 + EOS with padding,
// further chunks for long prompts; the negative prompt alongside. Below, from the run on screen
// (GenerationJob::text(), recorded by generate() itself): the text encoder's output per token,
// its L2 norm as a bar chart, and the selected token's vector as a colour strip.
#include <imgui.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "runtime/text/prompt.h"
#include "runtime/text/tokenizer.h"
#include "viewer/panels/panel.h"

namespace vksd::view {

namespace {

enum class Kind { Bos, Token, Eos, Pad };

// One position of the 77-token window(s).
struct Pos {
  int pos = 0;             // in the whole context: chunk * 77 + index
  int chunk = 0, index = 0;
  int ordinal = 0;         // Token: 1-based number among the prompt's tokens
  int32_t id = 0;
  float weight = 1;
  Kind kind = Kind::Pad;
  std::string piece;       // the BPE piece's text, "</w>" (end of word) removed
  bool word_end = false;
};

struct Tokens {
  std::string text;
  WeightedPrompt wp;
  std::vector<Pos> pos;
  int token_count = 0;
};

Tokens describe(const std::string& text, const WeightedPrompt& wp, const Tokenizer& tok) {
  Tokens t;
  t.text = text;
  t.wp = wp;
  t.token_count = wp.token_count;
  const int L = WeightedPrompt::kChunkLength;
  int ordinal = 0;
  for (int c = 0; c < wp.chunk_count; ++c) {
    bool ended = false;
    for (int i = 0; i < L; ++i) {
      Pos p;
      p.pos = c * L + i, p.chunk = c, p.index = i;
      p.id = wp.chunk_ids(c)[i];
      p.weight = wp.chunk_weights(c)[i];
      if (i == 0) p.kind = Kind::Bos;
      else if (ended) p.kind = Kind::Pad;
      else if (p.id == tok.eos_id()) p.kind = Kind::Eos, ended = true;
      else p.kind = Kind::Token, p.ordinal = ++ordinal;
      std::string s = tok.token_text(p.id);
      if (p.kind == Kind::Bos) s = "BOS";
      else if (p.kind == Kind::Eos || p.kind == Kind::Pad) s = p.id == tok.eos_id() ? "EOS" : s;
      else if (s.size() >= 4 && s.compare(s.size() - 4, 4, "</w>") == 0) s.resize(s.size() - 4), p.word_end = true;
      p.piece = s;
      t.pos.push_back(std::move(p));
    }
  }
  return t;
}

ImU32 kind_color(const Pos& p, float alpha = 1.f) {
  ImVec4 c;
  switch (p.kind) {
    case Kind::Bos: c = ImVec4(0.30f, 0.68f, 0.36f, alpha); break;
    case Kind::Eos: c = ImVec4(0.80f, 0.30f, 0.30f, alpha); break;
    case Kind::Pad: c = ImVec4(0.42f, 0.42f, 0.45f, alpha); break;
    case Kind::Token:
      if (p.weight > 1.f) c = ImVec4(0.93f, 0.58f, 0.15f, alpha);       // emphasised
      else if (p.weight < 1.f) c = ImVec4(0.62f, 0.45f, 0.85f, alpha);  // de-emphasised
      else c = ImVec4(0.28f, 0.50f, 0.85f, alpha);
      break;
  }
  return ImGui::ColorConvertFloat4ToU32(c);
}

// Diverging colour map for a value in [-1, 1]: blue - white - red.
ImU32 diverging(float v) {
  v = std::clamp(v, -1.f, 1.f);
  const float a = std::fabs(v);
  const ImVec4 end = v < 0 ? ImVec4(0.16f, 0.36f, 0.85f, 1) : ImVec4(0.85f, 0.18f, 0.15f, 1);
  return ImGui::ColorConvertFloat4ToU32(ImVec4(1 + (end.x - 1) * a, 1 + (end.y - 1) * a, 1 + (end.z - 1) * a, 1));
}

std::string fmt(const char* f, double v) {
  char b[2048];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

class TokensPanel : public Panel {
 public:
  TokensPanel() { default_size = ImVec2(1000, 900); }
  const char* name() const override { return "tokens"; }
  const char* title() const override { return "Text -> tokens -> vectors"; }

  bool set(const std::string& key, const std::string& value) override {
    if (key == "token") {
      selected_ = std::max(0, std::stoi(value));
      selected_neg_ = false;
      selected_set_ = true;
      return true;
    }
    return false;
  }

  void update(PanelFrame& f) override {
    if (!f.pipe) {
      prompt_.reset(), negative_.reset(), run_.reset(), run_neg_.reset(), rec_.reset();
      pipe_ = nullptr;
      return;
    }
    const Tokenizer& tok = f.pipe->tokenizer();
    if (pipe_ != f.pipe) prompt_.reset(), negative_.reset(), run_.reset(), run_neg_.reset(), rec_.reset();
    pipe_ = f.pipe;
    // As the user types: tokenizing is cheap; redo it only when the text changes.
    if (!prompt_ || prompt_->text != f.ui_params.prompt)
      prompt_ = std::make_unique<Tokens>(describe(f.ui_params.prompt, f.pipe->tokenize(f.ui_params.prompt), tok));
    if (!negative_ || negative_->text != f.ui_params.negative_prompt)
      negative_ = std::make_unique<Tokens>(
          describe(f.ui_params.negative_prompt, f.pipe->tokenize(f.ui_params.negative_prompt), tok));
    auto rec = f.job ? f.job->text() : nullptr;
    if (rec != rec_) {
      rec_ = rec;
      run_.reset(), run_neg_.reset();
      if (rec_) {
        run_ = std::make_unique<Tokens>(describe(rec_->prompt_text, rec_->prompt, tok));
        if (!rec_->uncond.empty()) run_neg_ = std::make_unique<Tokens>(describe(rec_->negative_text, rec_->negative, tok));
        norms_ = row_norms(rec_->cond, rec_->width);
        neg_norms_ = row_norms(rec_->uncond, rec_->width);
        if (!selected_set_) {
          // Start on the first emphasised token (the interesting one), else the first token.
          selected_ = run_->token_count > 0 ? 1 : 0, selected_neg_ = false;
          for (const auto& p : run_->pos)
            if (p.kind == Kind::Token && p.weight != 1.f) {
              selected_ = p.pos;
              break;
            }
        }
      }
    }
  }

  void draw(PanelFrame& f) override {
    const double vocab = f.pipe ? (double)f.pipe->tokenizer().vocab_size() : 49408.0;
    const std::string text = fmt(
        "A neural network needs numbers, so the prompt is cut into tokens: CLIP's byte-pair encoding (BPE) splits the "
        "lower-cased text into words and punctuation, then each word into the longest pieces of its vocabulary (this "
        "model: %.0f entries, BOS and EOS included; SD 1.5: 49408). A piece ending a word carries </w>, shown here as "
        "a trailing '_'. Each piece is an id. The text encoder always reads exactly 77 ids: BOS "
        "(start) + up to 75 prompt tokens + EOS (end), the rest padding; a longer prompt becomes several 77-token chunks, "
        "encoded separately and concatenated (75 prompt tokens per chunk). Emphasis '(word:1.3)' multiplies that "
        "token's output vector by 1.3, then the whole chunk is rescaled so that its mean is what it was before "
        "(A1111's rule). The text encoder (a 12-layer transformer in SD 1.5) turns every position into one vector "
        "of its hidden size; the UNet's cross-attention layers read all 77 of them at every denoising step. Below: "
        "the length (L2 norm) of each position's vector, and the selected one's numbers as colours (blue < 0 < red).",
        vocab);
    explanation(text.c_str());
    if (!f.pipe) {
      ImGui::TextWrapped("Loading the model...");
      return;
    }
    ImGui::BeginChild("tokens_scroll", ImVec2(0, 0), false);
    // ---- the prompt, as typed
    ImGui::TextWrapped("Prompt: \"%s\"", prompt_->text.c_str());
    ImGui::TextDisabled("%d token%s -> %d chunk%s of 77 ids%s", prompt_->token_count, prompt_->token_count == 1 ? "" : "s",
                        prompt_->wp.chunk_count, prompt_->wp.chunk_count == 1 ? "" : "s",
                        prompt_->wp.has_emphasis() ? "; emphasis in orange (> 1) / purple (< 1)" : "");
    draw_tokens("p", *prompt_, false, &window_rect_);
    ImGui::Spacing();
    ImGui::TextWrapped("Negative prompt: \"%s\"%s", negative_->text.c_str(),
                negative_->text.empty() ? "  (empty: the unconditional input is just BOS, EOS and padding)" : "");
    ImGui::TextDisabled("%d token%s -> %d chunk%s (classifier-free guidance encodes it too, padded to as many chunks as the prompt)",
                        negative_->token_count, negative_->token_count == 1 ? "" : "s", negative_->wp.chunk_count,
                        negative_->wp.chunk_count == 1 ? "" : "s");
    draw_tokens("n", *negative_, true, nullptr);
    ImGui::Separator();

    // ---- the run's vectors
    if (!rec_) {
      ImGui::TextWrapped(f.job && f.job->state() == JobState::Running
                             ? "Encoding the prompt..."
                             : "Press Generate: the text encoder's output for these tokens appears here.");
      chart_rect_ = strip_rect_ = ImVec4();
      ImGui::EndChild();
      return;
    }
    const bool same = rec_->prompt_text == prompt_->text && rec_->negative_text == negative_->text;
    ImGui::Text("Text encoder output of the run on screen: %d x %d numbers per prompt (%d positions x hidden size %d)%s",
                rec_->chunks * WeightedPrompt::kChunkLength, rec_->width, rec_->chunks * WeightedPrompt::kChunkLength,
                rec_->width, rec_->clip_skip > 1 ? fmt(", clip skip %g", rec_->clip_skip).c_str() : "");
    ImGui::TextDisabled("encoded in %.1f ms (%s)", rec_->text_ms, run_neg_ ? "prompt and negative prompt" : "prompt only: no guidance");
    if (!same)
      ImGui::TextColored(ImVec4(1, 0.8f, 0.4f, 1), "The prompt box has changed since this run; its vectors are of \"%s\" / \"%s\"",
                         rec_->prompt_text.c_str(), rec_->negative_text.c_str());
    float max_norm = 0;
    for (float v : norms_) max_norm = std::max(max_norm, v);
    for (float v : neg_norms_) max_norm = std::max(max_norm, v);
    ImGui::TextUnformatted("L2 norm of each position's vector (prompt)  - click a bar to select it");
    chart_rect_ = norm_chart("chart_p", *run_, norms_, max_norm, false, 90);
    if (run_neg_) {
      ImGui::TextUnformatted("L2 norm of each position's vector (negative prompt), same scale");
      norm_chart("chart_n", *run_neg_, neg_norms_, max_norm, true, 45);
    }
    ImGui::Spacing();
    draw_vectors();
    ImGui::EndChild();
  }

  void facts(PanelFacts& out) const override {
    if (!prompt_) return;
    std::string w = "[", ids = "[";
    for (const auto& p : prompt_->pos)
      if (p.kind == Kind::Token) {
        w += (w.size() > 1 ? ", " : "") + fmt("%g", p.weight);
        ids += (ids.size() > 1 ? ", " : "") + std::to_string(p.id);
      }
    out.push_back({"token_count", std::to_string(prompt_->token_count)});
    out.push_back({"chunks", std::to_string(prompt_->wp.chunk_count)});
    out.push_back({"weights", w + "]"});
    out.push_back({"ids", ids + "]"});
    if (negative_) out.push_back({"negative_token_count", std::to_string(negative_->token_count)});
    out.push_back({"vectors", rec_ ? "true" : "false"});
    if (rec_) {
      out.push_back({"width", std::to_string(rec_->width)});
      std::string n = "[";
      for (const auto& p : run_->pos)
        if (p.kind != Kind::Pad) n += (n.size() > 1 ? ", " : "") + fmt("%.4f", norms_[(size_t)p.pos]);
      out.push_back({"norms", n + "]"});
    }
    out.push_back({"selected", std::to_string(selected_)});
    out.push_back({"window", json_rect(window_rect_)});
    out.push_back({"norm_chart", json_rect(chart_rect_)});
    out.push_back({"strip", json_rect(strip_rect_)});
  }

 private:
  static std::vector<float> row_norms(const std::vector<float>& z, int width) {
    std::vector<float> n;
    if (width <= 0) return n;
    for (size_t r = 0; r + (size_t)width <= z.size(); r += (size_t)width) {
      double s = 0;
      for (int d = 0; d < width; ++d) s += (double)z[r + d] * z[r + d];
      n.push_back((float)std::sqrt(s));
    }
    return n;
  }

  bool is_selected(const Pos& p, bool neg) const { return p.pos == selected_ && neg == selected_neg_; }

  void tooltip(const Pos& p, const float* norm) {
    ImGui::BeginTooltip();
    static const char* kinds[] = {"BOS (start of text)", "prompt token", "EOS (end of text)", "padding"};
    ImGui::Text("position %d (chunk %d, index %d): %s", p.pos, p.chunk + 1, p.index, kinds[(int)p.kind]);
    ImGui::Text("piece \"%s%s\"  id %d  weight %g", p.piece.c_str(), p.word_end ? "</w>" : "", p.id, p.weight);
    if (norm) ImGui::Text("|vector| = %.3f", *norm);
    ImGui::EndTooltip();
  }

  // The 77-cell window(s) and the tokens as chips.
  void draw_tokens(const char* id, const Tokens& t, bool neg, ImVec4* rect_out) {
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const float avail = ImGui::GetContentRegionAvail().x;
    const int L = WeightedPrompt::kChunkLength;
    const float cell = std::max(4.f, std::floor((avail - 60) / L));
    const float line = ImGui::GetTextLineHeight();
    for (int c = 0; c < t.wp.chunk_count; ++c) {
      // The window: one cell per id.
      ImGui::TextDisabled("chunk %d", c + 1);
      ImGui::SameLine(58);
      const ImVec2 o = ImGui::GetCursorScreenPos();
      ImGui::PushID(id);
      ImGui::PushID(c);
      ImGui::InvisibleButton("window", ImVec2(cell * L, 16));
      const bool hovered = ImGui::IsItemHovered() && mouse_used();
      const bool clicked = ImGui::IsItemClicked();
      ImGui::PopID();
      ImGui::PopID();
      if (rect_out && c == 0) *rect_out = fb_rect(o, ImVec2(o.x + cell * L, o.y + 16));
      int n_tok = 0, n_pad = 0;
      for (int i = 0; i < L; ++i) {
        const Pos& p = t.pos[(size_t)(c * L + i)];
        n_tok += p.kind == Kind::Token, n_pad += p.kind == Kind::Pad;
        const ImVec2 a(o.x + i * cell, o.y), b(a.x + cell - 1, o.y + 16);
        dl->AddRectFilled(a, b, kind_color(p));
        if (is_selected(p, neg)) dl->AddRect(ImVec2(a.x - 1, a.y - 2), ImVec2(b.x + 1, b.y + 2), IM_COL32(255, 235, 60, 255), 0, 0, 2);
      }
      const float mx = ImGui::GetIO().MousePos.x;
      const int hi = std::clamp((int)((mx - o.x) / cell), 0, L - 1);
      if (hovered) tooltip(t.pos[(size_t)(c * L + hi)], nullptr);
      if (clicked) selected_ = c * L + hi, selected_neg_ = neg, selected_set_ = true;
      ImGui::SetCursorScreenPos(ImVec2(o.x, ImGui::GetCursorScreenPos().y));
      ImGui::TextDisabled("1 BOS + %d prompt token%s + 1 EOS + %d padding = 77 ids (positions %d-%d)", n_tok,
                          n_tok == 1 ? "" : "s", n_pad, c * L, c * L + L - 1);
      // The chips: BOS, each token, EOS, then the padding as one chip.
      ImGui::SetCursorScreenPos(ImVec2(o.x, ImGui::GetCursorScreenPos().y));
      const float right = ImGui::GetWindowPos().x + ImGui::GetWindowContentRegionMax().x;
      bool first = true;
      for (int i = 0; i < L; ++i) {
        const Pos& p = t.pos[(size_t)(c * L + i)];
        if (p.kind == Kind::Pad && i > 0 && t.pos[(size_t)(c * L + i - 1)].kind == Kind::Pad) continue;
        const std::string top = p.kind == Kind::Pad ? fmt("EOS x %.0f", n_pad) : p.piece + (p.word_end ? "_" : "");
        const std::string mid = p.kind == Kind::Pad ? std::string("padding") : fmt("id %.0f", p.id);
        const std::string bot = p.kind == Kind::Token ? (p.weight != 1.f ? fmt("x%.2f", p.weight) : fmt("#%.0f", p.ordinal))
                                                      : std::string(p.kind == Kind::Bos ? "start" : p.kind == Kind::Eos ? "end" : "");
        const float w = std::max({ImGui::CalcTextSize(top.c_str()).x, ImGui::CalcTextSize(mid.c_str()).x,
                                  ImGui::CalcTextSize(bot.c_str()).x}) + 10;
        const float h = 3 * line + 6;
        if (!first) {
          ImGui::SameLine(0, 4);
          if (ImGui::GetCursorScreenPos().x + w > right) ImGui::NewLine(), ImGui::SetCursorScreenPos(ImVec2(o.x, ImGui::GetCursorScreenPos().y));
        }
        first = false;
        const ImVec2 a = ImGui::GetCursorScreenPos();
        ImGui::PushID(id);
        ImGui::PushID(p.pos);
        ImGui::InvisibleButton("chip", ImVec2(w, h));
        ImGui::PopID();
        ImGui::PopID();
        if (ImGui::IsItemHovered() && mouse_used()) tooltip(p, nullptr);
        if (ImGui::IsItemClicked()) selected_ = p.pos, selected_neg_ = neg, selected_set_ = true;
        const ImVec2 b(a.x + w, a.y + h);
        dl->AddRectFilled(a, b, kind_color(p, 0.35f), 3);
        dl->AddRect(a, b, is_selected(p, neg) ? IM_COL32(255, 235, 60, 255) : kind_color(p), 3, 0,
                    is_selected(p, neg) ? 2.f : 1.f);
        dl->AddText(ImVec2(a.x + 5, a.y + 3), IM_COL32(255, 255, 255, 255), top.c_str());
        dl->AddText(ImVec2(a.x + 5, a.y + 3 + line), IM_COL32(200, 200, 200, 255), mid.c_str());
        dl->AddText(ImVec2(a.x + 5, a.y + 3 + 2 * line),
                    p.kind == Kind::Token && p.weight != 1.f ? kind_color(p) : IM_COL32(160, 160, 160, 255), bot.c_str());
      }
      if (t.wp.chunk_count > 1 && c + 1 < t.wp.chunk_count) ImGui::Spacing();
    }
  }

  // Bars: the L2 norm of every position's vector, coloured by kind; returns the chart's rect.
  ImVec4 norm_chart(const char* id, const Tokens& t, const std::vector<float>& norms, float max_norm, bool neg, float height) {
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const float axis = 52;
    const float avail = ImGui::GetContentRegionAvail().x - axis;
    const int n = (int)std::min(norms.size(), t.pos.size());
    if (n == 0 || max_norm <= 0) return ImVec4();
    const float bw = std::max(2.f, std::floor(avail / n));
    const ImVec2 o = ImGui::GetCursorScreenPos();
    const ImVec2 c0(o.x + axis, o.y);
    ImGui::PushID(id);
    ImGui::InvisibleButton("bars", ImVec2(axis + bw * n, height + ImGui::GetTextLineHeight() + 2));
    ImGui::PopID();
    const bool hovered = ImGui::IsItemHovered() && mouse_used(), clicked = ImGui::IsItemClicked();
    // Axis: 0 and the maximum, a middle grid line.
    dl->AddLine(ImVec2(c0.x, c0.y), ImVec2(c0.x, c0.y + height), IM_COL32(150, 150, 150, 255));
    dl->AddLine(ImVec2(c0.x, c0.y + height), ImVec2(c0.x + bw * n, c0.y + height), IM_COL32(150, 150, 150, 255));
    dl->AddLine(ImVec2(c0.x, c0.y + height / 2), ImVec2(c0.x + bw * n, c0.y + height / 2), IM_COL32(90, 90, 90, 255));
    const std::string top = fmt("%.1f", max_norm), mid = fmt("%.1f", max_norm / 2);
    dl->AddText(ImVec2(o.x + axis - 6 - ImGui::CalcTextSize(top.c_str()).x, c0.y - 2), IM_COL32(200, 200, 200, 255), top.c_str());
    dl->AddText(ImVec2(o.x + axis - 6 - ImGui::CalcTextSize(mid.c_str()).x, c0.y + height / 2 - 7), IM_COL32(160, 160, 160, 255),
                mid.c_str());
    dl->AddText(ImVec2(o.x + axis - 14, c0.y + height - 12), IM_COL32(160, 160, 160, 255), "0");
    for (int i = 0; i < n; ++i) {
      const Pos& p = t.pos[(size_t)i];
      const float v = norms[(size_t)i] / max_norm * height;
      const ImVec2 a(c0.x + i * bw + (bw > 3 ? 1 : 0), c0.y + height - v), b(c0.x + (i + 1) * bw, c0.y + height);
      dl->AddRectFilled(a, b, kind_color(p));
      if (is_selected(p, neg))
        dl->AddRect(ImVec2(a.x - 1, c0.y), ImVec2(b.x + 1, b.y + 1), IM_COL32(255, 235, 60, 255), 0, 0, 2);
      if (p.index == 0 && p.chunk > 0)
        dl->AddLine(ImVec2(a.x - 1, c0.y), ImVec2(a.x - 1, c0.y + height), IM_COL32(255, 255, 255, 120));
      // Labels under the non-padding positions: B, the token's number, E.
      if (p.kind != Kind::Pad) {
        const std::string l = p.kind == Kind::Bos ? "B" : p.kind == Kind::Eos ? "E" : std::to_string(p.ordinal);
        const float lw = ImGui::CalcTextSize(l.c_str()).x;
        if (lw <= bw + 4 || p.kind != Kind::Token)
          dl->AddText(ImVec2(a.x + (bw - lw) / 2, c0.y + height + 1), kind_color(p), l.c_str());
      }
    }
    const float mx = ImGui::GetIO().MousePos.x;
    const int hi = (int)((mx - c0.x) / bw);
    if (hovered && hi >= 0 && hi < n) tooltip(t.pos[(size_t)hi], &norms[(size_t)hi]);
    if (clicked && hi >= 0 && hi < n) selected_ = hi, selected_neg_ = neg, selected_set_ = true;
    return fb_rect(o, ImVec2(c0.x + bw * n, c0.y + height));
  }

  // The selected position's vector as a colour strip, and every non-padding position's below it.
  void draw_vectors() {
    const bool neg = selected_neg_ && run_neg_;
    const Tokens& t = neg ? *run_neg_ : *run_;
    const std::vector<float>& z = neg ? rec_->uncond : rec_->cond;
    const int W = rec_->width, n = (int)t.pos.size();
    const int sel = std::clamp(selected_, 0, n - 1);
    const Pos& p = t.pos[(size_t)sel];
    const float* v = z.data() + (size_t)sel * W;
    float lo = v[0], hi = v[0];
    for (int d = 0; d < W; ++d) lo = std::min(lo, v[d]), hi = std::max(hi, v[d]);
    const float scale = std::max(std::fabs(lo), std::fabs(hi));
    static const char* kinds[] = {"BOS", "prompt token", "EOS", "padding (EOS)"};
    ImGui::Text("Selected: %s position %d, \"%s%s\" (%s, id %d, weight %g): %d numbers, min %.3f, max %.3f, |v| = %.3f",
                neg ? "negative prompt" : "prompt", p.pos, p.piece.c_str(), p.word_end ? "</w>" : "", kinds[(int)p.kind], p.id,
                p.weight, W, lo, hi, (neg ? neg_norms_ : norms_)[(size_t)sel]);
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const float label_w = 120;
    const float avail = ImGui::GetContentRegionAvail().x - label_w - 70;
    const float cw = std::max(1.f, avail / W);
    // The big strip.
    ImVec2 o = ImGui::GetCursorScreenPos();
    dl->AddText(ImVec2(o.x, o.y + 8), IM_COL32(255, 235, 60, 255), "selected");
    const ImVec2 s0(o.x + label_w, o.y);
    for (int d = 0; d < W; ++d)
      dl->AddRectFilled(ImVec2(s0.x + d * cw, s0.y), ImVec2(s0.x + (d + 1) * cw, s0.y + 28), diverging(scale > 0 ? v[d] / scale : 0));
    dl->AddRect(ImVec2(s0.x - 1, s0.y - 1), ImVec2(s0.x + W * cw + 1, s0.y + 29), IM_COL32(255, 235, 60, 255));
    dl->AddText(ImVec2(s0.x + W * cw + 6, s0.y + 8), IM_COL32(200, 200, 200, 255), fmt("+-%.2f", scale).c_str());
    strip_rect_ = fb_rect(s0, ImVec2(s0.x + W * cw, s0.y + 28));
    ImGui::Dummy(ImVec2(label_w + W * cw, 30));
    ImGui::TextDisabled("dimension 0 .. %d of the hidden state; blue < 0 < red, each row scaled to its own largest |value| "
                        "(at right)", W - 1);
    // Every non-padding position (and the first padding one), one row each.
    const float rh = std::max(9.f, ImGui::GetTextLineHeight());
    for (const Pos& q : t.pos) {
      if (q.kind == Kind::Pad && !(q.index > 0 && t.pos[(size_t)q.pos - 1].kind == Kind::Eos)) continue;
      const float* r = z.data() + (size_t)q.pos * W;
      float m = 0;
      for (int d = 0; d < W; ++d) m = std::max(m, std::fabs(r[d]));
      o = ImGui::GetCursorScreenPos();
      ImGui::PushID(q.pos);
      ImGui::InvisibleButton("row", ImVec2(label_w + W * cw, rh));
      ImGui::PopID();
      if (ImGui::IsItemClicked()) selected_ = q.pos, selected_set_ = true;
      if (ImGui::IsItemHovered() && mouse_used()) tooltip(q, &(neg ? neg_norms_ : norms_)[(size_t)q.pos]);
      std::string l = std::to_string(q.pos) + " " + q.piece + (q.word_end ? "_" : "") + (q.kind == Kind::Pad ? " (pad)" : "");
      if (q.kind == Kind::Token && q.weight != 1.f) l += fmt(" x%.2f", q.weight);
      dl->AddText(ImVec2(o.x, o.y), q.pos == sel ? IM_COL32(255, 235, 60, 255) : kind_color(q), l.c_str());
      for (int d = 0; d < W; ++d)
        dl->AddRectFilled(ImVec2(o.x + label_w + d * cw, o.y + 1), ImVec2(o.x + label_w + (d + 1) * cw, o.y + rh - 1),
                          diverging(m > 0 ? r[d] / m : 0));
      if (q.pos == sel) dl->AddRect(ImVec2(o.x + label_w - 1, o.y), ImVec2(o.x + label_w + W * cw + 1, o.y + rh), IM_COL32(255, 235, 60, 255));
      dl->AddText(ImVec2(o.x + label_w + W * cw + 6, o.y), IM_COL32(160, 160, 160, 255), fmt("%.2f", m).c_str());
    }
  }

  const SdPipeline* pipe_ = nullptr;
  std::unique_ptr<Tokens> prompt_, negative_, run_, run_neg_;
  std::shared_ptr<const TextRecord> rec_;
  std::vector<float> norms_, neg_norms_;
  int selected_ = 1;
  bool selected_neg_ = false, selected_set_ = false;
  ImVec4 window_rect_{}, chart_rect_{}, strip_rect_{};
};

}  // namespace

std::unique_ptr<Panel> make_tokens_panel() { return std::make_unique<TokensPanel>(); }

}  // namespace vksd::view

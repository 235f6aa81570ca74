// The step images of a run (`vksd generate --save-steps DIR`, `--preview FILE`), written as
// each step happens (an interrupted run keeps the frames so far), and at the end a contact sheet
// with a column per kept step, labelled with the step, its timestep t and noise level sigma, and
// two labelled rows: the noisy latent x_t and the model's guess of the final image x̂₀.
#pragma once
#include <string>
#include <vector>

#include "runtime/diffusion/pipeline.h"

namespace vksd {

struct StepFrameOptions {
  std::string dir;           // --save-steps DIR ("" = no frames)
  std::string prefix;        // file name prefix ("img<k>_" in a batch)
  bool vae = false;          // --step-preview vae: x̂₀ through the VAE (after the run)
  int every = 1;             // --save-steps-every N: keep every N-th step (and the last)
  std::string preview;       // --preview FILE ("" = none): x̂₀ rewritten as the run goes
  int preview_interval = 1;  // --preview-interval N
};

class StepFrames {
 public:
  // width, height: the image; `map`: the model's latent -> RGB preview map.
  StepFrames(const StepFrameOptions& o, const LatentRgbMap& map, int width, int height);
  // `run_step` is the 1-based step of this run (what the progress line and JSON say).
  void on_step(const StepEvent& e, int run_step, int run_steps);
  // After generate(): the VAE frames (if asked) and the contact sheet.
  void finish(SdPipeline& pipe);

 private:
  struct Kept {
    int step;
    double t, sigma;
    std::vector<double> x0;
    Image xt, x0_img;
  };
  Image approx(const std::vector<double>& latent, double scale) const;
  std::string frame_path(int step, const char* what) const;
  StepFrameOptions o_;
  LatentRgbMap map_;
  int width_, height_, lh_ = 0, lw_ = 0;
  std::vector<Kept> kept_;
};

// 5x7 bitmap text (digits, a few letters, '.', '=', '_', 'σ'), for labels on generated sheets.
// Draws `text` in `rgb` with its top-left corner at (x, y), clipped to the image; returns the
// width in pixels (6 per character).
int draw_label(Image& img, int x, int y, const std::string& text, const uint8_t rgb[3]);

// The contact sheet: columns of (x_t above x̂₀) tiles with a label strip above each column
// (step, t, sigma) and the row names on the left.
Image labelled_contact_sheet(const std::vector<Image>& xt, const std::vector<Image>& x0,
                             const std::vector<std::vector<std::string>>& column_labels);

}  // namespace vksd

// A program embedding vksd through its installed public API (<vksd/vksd.h>): open the demo model,
// generate with an observer, cancel a second run from the observer.
// usage: consumer OUT.png   (prints one line per step; exit 0 on success)
#include <vksd/vksd.h>

#include <cstdio>
#include <string>

#ifdef VKSD_SOURCE_DIR
#error "the installed package must not point consumers at vksd's source tree"
#endif

struct Steps : vksd::Observer {
  int steps = 0, cancel_after = -1;
  void on_step(const vksd::StepEvent& e) override {
    ++steps;
    std::printf("step %d/%d sigma %.4f\n", e.index + 1, e.count, e.sigma);
  }
  bool cancelled() override { return cancel_after >= 0 && steps >= cancel_after; }
};

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  try {
    vksd::Context ctx(vksd::ContextOptions::from_env());
    vksd::PipelineOptions po;
    po.model_path = VKSD_DEMO_MODEL;
    vksd::SdPipeline pipe(ctx, po);
    vksd::GenerateParams p;
    p.prompt = "red apple";
    p.steps = 6;
    p.sampler = vksd::parse_sampler("euler");
    p.cfg_scale = 5;
    p.seed = 42;
    p.width = p.height = pipe.config().sample_size;
    Steps obs;
    vksd::GenerateResult r = pipe.generate(p, &obs);
    if (obs.steps != 6) return std::fprintf(stderr, "observer saw %d steps, not 6\n", obs.steps), 1;
    vksd::write_png(argv[1], r.image, {{"parameters", r.parameters}});

    Steps stopper;
    stopper.cancel_after = 2;
    try {
      pipe.generate(p, &stopper);
      return std::fprintf(stderr, "a cancelled run returned an image\n"), 1;
    } catch (const vksd::Error& e) {
      if (stopper.steps != 2) return std::fprintf(stderr, "cancel after 2 steps ran %d\n", stopper.steps), 1;
      std::printf("cancelled after %d steps: %s\n", stopper.steps, e.what());
    }
  } catch (const vksd::Error& e) {
    std::fprintf(stderr, "consumer: %s\n", e.what());
    return 1;
  }
  return 0;
}

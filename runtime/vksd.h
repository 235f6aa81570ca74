// vksd's public API in one include (installed as <vksd/vksd.h>; in the source tree
// "runtime/vksd.h"). What a program embedding vksd needs:
//
//   vksd::Context ctx(vksd::ContextOptions::from_env());   // the Vulkan device
//   vksd::PipelineOptions po;
//   po.model_path = vksd::resolve_model_path("");          // "" = $VKSD_MODEL, else the demo model
//   vksd::SdPipeline pipe(ctx, po);                          // open a model (weights to the GPU)
//   vksd::GenerateParams p;                                  // prompt, size, steps, sampler, seed
//                                                            // (random_seed() for a random one), ...
//   p.prompt = "red apple";
//   p.width = p.height = pipe.config().sample_size;
//   vksd::GenerateResult r = pipe.generate(p, &observer);    // blocks; observer optional
//   vksd::write_png("out.png", r.image, {{"parameters", r.parameters}});
//
// Observing and cancelling: an Observer (diffusion/pipeline.h) gets every stage and step (with
// the latents, for previews: latent_preview()) and is asked cancelled() after every step; true
// ends generate() with an Error. To run in the background with pause / step / cancel from
// another thread, hand the pipeline to a GenerationJob (diffusion/generation_job.h), as
// `vksd view` and `vksd serve` do. Every failure is a vksd::Error (error.h) with a message
// that names the problem.
//
// `vksd serve` (server/) uses nothing but this header.
//
// Models: an installed vksd finds its demo model in <prefix>/share/vksd/weights/demo (the CMake
// package also names it: vksd_DEMO_MODEL); shaders are compiled into the library.
#pragma once

#include "runtime/diffusion/generation_job.h"
#include "runtime/diffusion/init_images.h"
#include "runtime/diffusion/pipeline.h"
#include "runtime/diffusion/rng.h"
#include "runtime/error.h"
#include "runtime/gpu/context.h"
#include "runtime/io/image_io.h"
#include "runtime/model/demo_model.h"

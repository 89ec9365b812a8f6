// libFuzzer target: any bytes given to the checkpoint loader either rebuild a model or raise
// InputError; a corrupt checkpoint must never crash the process that reads it.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include "distillery/error.h"
#include "distillery/nn/model_spec.h"
#include "distillery/train/checkpoint.h"

// The seed is written by the current code rather than committed, so it never goes stale when the
// format changes: a tiny MLP checkpoint, into $DISTILLERY_FUZZ_SEED_DIR when that is set.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("DISTILLERY_FUZZ_SEED_DIR")) {
    distillery::nn::ModelSpec spec;
    spec.image_size = 4;
    spec.num_classes = 3;
    spec.hidden = {5};
    auto model = distillery::nn::make_model(spec);
    distillery::train::save_checkpoint(std::string(dir) + "/tiny-mlp.pt", *model, {spec, 7, {}}, nullptr);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The loader reads files (as users give it); one scratch file per fuzzing process.
  static const std::string path = "/tmp/distillery-fuzz-checkpoint-" + std::to_string(::getpid()) + ".pt";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    (void)distillery::train::load_model(path);
  } catch (const distillery::InputError&) {
  }
  return 0;
}

// The export metadata JSON written beside a .pte as <path>.json (export/executorch.py): model facts
// and the prompts whose text features were computed at export time (no text encoder on the device).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace esam3 {

constexpr int kMetadataFormatVersion = 1;

// What the runner needs to know about a model; mirrors runtime.backends.base.ModelInfo.
struct ModelInfo {
  std::string preset;
  int image_size = 0;
  int context_frames = 0;  // T memory slots
  int memory_stride = 0;   // write every n-th stream frame into memory
  int num_queries = 0;     // Q
  int max_text_length = 0; // L
  int hidden_size = 0;     // C

  int mask_size() const { return static_cast<int>(image_size / 3.5); }  // FPN level 0 (144 at 504 px)
  int memory_grid() const { return image_size / 28; }                   // FPN level 3 (18 at 504 px)
  // Spatial sides of encode_frame's four outputs: FPN levels 0-2, then the memory feature.
  std::vector<int> fpn_sides() const { return {mask_size(), image_size / 7, image_size / 14, memory_grid()}; }
};

// One stored prompt: text_features [L, C] float32 row-major, attention_mask [L] (1 = real token).
struct StoredPrompt {
  std::string text;
  std::vector<float> text_features;
  std::vector<int64_t> attention_mask;
};

struct ExportMetadata {
  std::string path;
  ModelInfo info;
  std::string quantization;
  std::vector<StoredPrompt> prompts;
};

// "<pte>.json" for a program path.
std::string metadata_path_for(const std::string& program_path);

// Read and validate a metadata JSON for `expected_backend`; Esam3Error names the file and the problem.
ExportMetadata read_export_metadata(const std::string& path, const std::string& expected_backend = "executorch");

}  // namespace esam3

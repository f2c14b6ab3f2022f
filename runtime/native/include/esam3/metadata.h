// The export metadata JSON written beside a .pte as <path>.json (export/executorch.py): model facts,
// the contract (pixel normalisation, grid sizes, slot order; efficient_sam3/contract.py states it) and
// the prompts whose text features were computed at export time (no text encoder on the device).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace esam3 {

// Reads format_version 1 (the contract fields absent: SAM3's values, which every v1 export used) and 2.
constexpr int kMetadataFormatVersion = 3;

// What the runner needs to know about a model; mirrors runtime.backends.base.ModelInfo.
struct ModelInfo {
  std::string preset;
  int image_size = 0;
  int context_frames = 0;  // T memory slots; slot T-1 is the newest written frame
  int memory_stride = 0;   // write every n-th stream frame into memory
  int num_queries = 0;     // Q
  int max_text_length = 0; // L
  int hidden_size = 0;     // C
  int max_prompts = 1;     // prompts one decode call takes (format_version 3; earlier exports take one)
  std::array<float, 3> pixel_mean{};  // RGB, applied after / 255
  std::array<float, 3> pixel_std{};
  std::vector<int> fpn_sizes;  // spatial sides of FPN levels 0-3 (144, 72, 36, 18 at 504 px)
  int mask_side = 0;           // FPN level 0: the mask logits
  int memory_side = 0;         // FPN level 3: what the memory stores

  int mask_size() const { return mask_side; }
  int memory_grid() const { return memory_side; }
  // Spatial sides of encode_frame's four outputs: FPN levels 0-2, then the memory feature.
  const std::vector<int>& fpn_sides() const { return fpn_sizes; }
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

// The exported ExecuTorch program (one .pte with methods encode_frame, decode, encode_text), checked
// against the export contract when it is opened. Programs are stateless; the stream's memory lives in
// the session. Outputs are views into the program's own buffers, valid until the same method runs again.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "esam3/metadata.h"

namespace esam3 {

// encode_frame's outputs (batch 1): fpn[0..2] = FPN levels 0-2 [C, 144, 144], [C, 72, 72], [C, 36, 36];
// memory_feature = level 3 [C, 18, 18], what the memory ring stores. Valid until the next encode_frame.
struct FrameFeatures {
  const float* fpn[3] = {nullptr, nullptr, nullptr};
  const float* memory_feature = nullptr;
};

// decode's outputs for one frame and one prompt (batch dimension dropped): pred_masks [Q, M, M] mask
// logits, pred_boxes [Q, 4] normalised xyxy, pred_logits [Q], presence_logit, iou_scores [Q].
// One per prompt of a decode call; valid until the next decode.
struct DecodeOutput {
  const float* pred_masks = nullptr;
  const float* pred_boxes = nullptr;
  const float* pred_logits = nullptr;
  float presence_logit = 0.0f;
  const float* iou_scores = nullptr;
  int num_queries = 0;
  int mask_size = 0;
};

class Program {
 public:
  // Loads `pte_path` and checks its methods, input and output shapes and dtypes against `info`
  // (Esam3Error naming the file and the first mismatch). num_threads > 0 resizes ExecuTorch's
  // shared thread pool; 0 keeps its default (one thread per core).
  Program(const std::string& pte_path, const ModelInfo& info, int num_threads = 0);
  ~Program();
  Program(const Program&) = delete;
  Program& operator=(const Program&) = delete;

  const ModelInfo& info() const;

  // pixel_values [1, 3, S, S] float32 (SAM3 preprocessing).
  FrameFeatures encode_frame(const float* pixel_values);

  // memory_features [1, T, C, G, G] float32; memory_mask [1, T] (1 = valid slot);
  // text_features [P, L, C] float32; text_mask [P, L] int64, for 1 <= P <= info().max_prompts prompts
  // segmented in one call. Returns one DecodeOutput per prompt, in order.
  std::vector<DecodeOutput> decode(const FrameFeatures& frame, const float* memory_features,
                                   const uint8_t* memory_mask, const float* text_features, const int64_t* text_mask,
                                   int num_prompts);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace esam3

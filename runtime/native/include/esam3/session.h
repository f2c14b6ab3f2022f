// VideoSession: streaming concept segmentation, one frame at a time, with constant memory; mirrors
// runtime/session.py.
//
// Per frame: preprocess -> encode_frame once -> for every prompt, decode with the memory of the frames
// written before this one -> detections (NMS at mask resolution, masks at frame size) -> object ids (tracker on
// the mask-resolution masks) -> on a memory frame
// (frame_index % memory_stride == 0) write this frame's level-3 feature into the ring.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "esam3/memory_ring.h"
#include "esam3/metadata.h"
#include "esam3/postprocess.h"
#include "esam3/program.h"
#include "esam3/tracker.h"

namespace esam3 {

// memory_stride: write every n-th frame into memory (0: the model's).
struct SessionConfig {
  int memory_stride = 0;
  PostprocessConfig postprocess;
  TrackerConfig tracker;
};

// A prompt of the session: the text as the user named it and the stored features it uses.
struct SessionPrompt {
  std::string text;
  const StoredPrompt* features;
};

// One object in one frame: mask CV_8U [H, W] (1 = object), box in pixels (x2, y2 exclusive),
// score = score probability, obj_id stable across frames.
struct ObjectResult {
  int obj_id;
  std::string prompt;
  cv::Mat mask;
  std::array<float, 4> box_xyxy;
  double score;
};

// frame_index: stream index (0-based since the last reset); objects in prompt order, best score first;
// memory_frames: stream indices the frame was decoded with, oldest first.
struct FrameResult {
  int64_t frame_index;
  cv::Size frame_size;
  std::vector<ObjectResult> objects;
  double latency_ms;
  std::vector<int64_t> memory_frames;
};

// Everything one stream remembers.
struct StreamState {
  MemoryRing memory;
  int64_t frame_index = 0;
  cv::Size frame_size;  // empty before the first frame
  TrackerState tracks;
};

// Normalised prompt text as matched against stored prompts: lower case, single spaces.
std::string normalise_prompt(const std::string& text);

class VideoSession {
 public:
  // `program` and `metadata` must outlive the session. Prompts are added with add_prompt.
  VideoSession(Program& program, const ExportMetadata& metadata, const SessionConfig& config);

  // Segment the stored prompt matching `text` (case- and whitespace-insensitive) from the next frame on.
  void add_prompt(const std::string& text);
  // Segment stored prompt number `index` (its stored text is the category).
  void add_prompt(size_t index);

  // Segment every prompt in `frame_bgr` (CV_8UC3, BGR as OpenCV decodes it).
  FrameResult step(const cv::Mat& frame_bgr);

  // Forget the video (memory, objects, frame count, frame size); keep the prompts.
  void reset();

  const StreamState& state() const { return state_; }
  const std::vector<SessionPrompt>& prompts() const { return prompts_; }
  int memory_stride() const { return memory_stride_; }

 private:
  void add(const std::string& text, const StoredPrompt& features);

  Program& program_;
  const ExportMetadata& metadata_;
  SessionConfig config_;
  int memory_stride_;
  std::vector<SessionPrompt> prompts_;
  StreamState state_;
  std::vector<float> pixels_;  // [3, S, S] scratch, reused every frame
  // The prompts' text inputs stacked in prompt order, [P, L, C] and [P, L]: decode takes
  // info.max_prompts rows at a time. Rebuilt when a prompt is added.
  std::vector<float> text_features_;
  std::vector<int64_t> text_masks_;
};

}  // namespace esam3

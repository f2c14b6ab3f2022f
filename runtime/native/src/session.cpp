#include "esam3/session.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <sstream>

#include "esam3/error.h"
#include "esam3/preprocess.h"

namespace esam3 {

std::string normalise_prompt(const std::string& text) {
  std::istringstream words(text);
  std::string word, normalised;
  while (words >> word) {
    for (char& c : word) {
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    normalised += (normalised.empty() ? "" : " ") + word;
  }
  if (normalised.empty()) {
    throw Esam3Error("empty prompt: give the concept to segment, e.g. 'red circle'");
  }
  return normalised;
}

VideoSession::VideoSession(Program& program, const ExportMetadata& metadata, const SessionConfig& config)
    : program_(program), metadata_(metadata), config_(config) {
  config_.postprocess.validate();
  config_.tracker.validate();
  if (config_.memory_stride < 0) {
    throw Esam3Error("memory_stride must be positive, got " + std::to_string(config_.memory_stride));
  }
  memory_stride_ = config_.memory_stride > 0 ? config_.memory_stride : metadata.info.memory_stride;
  reset();
}

void VideoSession::add(const std::string& text, const StoredPrompt& features) {
  const std::string key = normalise_prompt(text);
  for (const SessionPrompt& prompt : prompts_) {
    if (normalise_prompt(prompt.text) == key) {
      throw Esam3Error("prompt '" + text + "' was already added");
    }
  }
  prompts_.push_back(SessionPrompt{text, &features});
  text_features_.insert(text_features_.end(), features.text_features.begin(), features.text_features.end());
  text_masks_.insert(text_masks_.end(), features.attention_mask.begin(), features.attention_mask.end());
}

void VideoSession::add_prompt(const std::string& text) {
  const std::string wanted = normalise_prompt(text);
  std::string stored;
  for (const StoredPrompt& prompt : metadata_.prompts) {
    if (normalise_prompt(prompt.text) == wanted) {
      add(text, prompt);
      return;
    }
    stored += (stored.empty() ? "'" : ", '") + prompt.text + "'";
  }
  throw Esam3Error("prompt '" + text + "' is not stored in " + metadata_.path + "; this export has text features for [" +
                   stored + "] (re-export with --prompt '" + text + "')");
}

void VideoSession::add_prompt(size_t index) {
  if (index >= metadata_.prompts.size()) {
    throw Esam3Error("prompt id " + std::to_string(index) + " is out of range: " + metadata_.path + " stores " +
                     std::to_string(metadata_.prompts.size()) + " prompt(s), ids 0.." +
                     std::to_string(static_cast<int64_t>(metadata_.prompts.size()) - 1));
  }
  add(metadata_.prompts[index].text, metadata_.prompts[index]);
}

void VideoSession::reset() {
  const ModelInfo& info = metadata_.info;
  state_ = StreamState{empty_memory(info.context_frames, info.hidden_size, info.memory_grid()), 0, cv::Size(), {}};
}

FrameResult VideoSession::step(const cv::Mat& frame_bgr) {
  const auto start = std::chrono::steady_clock::now();
  if (prompts_.empty()) {
    throw Esam3Error("no prompt to segment: add a prompt before step()");
  }
  const std::string where = "frame " + std::to_string(state_.frame_index);
  if (frame_bgr.empty() || frame_bgr.type() != CV_8UC3) {
    throw Esam3Error(where + ": expected a non-empty 8-bit BGR frame with 3 channels");
  }
  const cv::Size frame_size = frame_bgr.size();
  if (!state_.frame_size.empty() && frame_size != state_.frame_size) {
    throw Esam3Error(where + ": size " + std::to_string(frame_size.height) + "x" + std::to_string(frame_size.width) +
                     " differs from the stream's " + std::to_string(state_.frame_size.height) + "x" +
                     std::to_string(state_.frame_size.width) + "; a stream keeps one frame size");
  }
  const ModelInfo& info = metadata_.info;
  preprocess_frame(frame_bgr, info.image_size, info.pixel_mean, info.pixel_std, pixels_);
  const FrameFeatures features = program_.encode_frame(pixels_.data());

  std::vector<Detection> detections;
  const size_t feature_row = static_cast<size_t>(info.max_text_length) * info.hidden_size;
  const size_t mask_row = static_cast<size_t>(info.max_text_length);
  for (size_t first = 0; first < prompts_.size(); first += info.max_prompts) {  // one decode per max_prompts
    const int count = static_cast<int>(std::min(prompts_.size() - first, static_cast<size_t>(info.max_prompts)));
    const std::vector<DecodeOutput> outputs =
        program_.decode(features, state_.memory.features.data(), state_.memory.mask.data(),
                        text_features_.data() + first * feature_row, text_masks_.data() + first * mask_row, count);
    for (int p = 0; p < count; ++p) {
      const std::string& text = prompts_[first + p].text;
      for (Detection& detection : detections_from_output(outputs[p], text, frame_size, config_.postprocess)) {
        detections.push_back(std::move(detection));
      }
    }
  }
  std::vector<std::string> prompts;
  std::vector<cv::Mat> masks;
  for (const Detection& detection : detections) {
    prompts.push_back(detection.prompt);
    masks.push_back(detection.coarse_mask);  // association at the model's mask resolution
  }
  const std::vector<int> obj_ids = update_tracks(state_.tracks, prompts, masks, config_.tracker);

  FrameResult result;
  result.frame_index = state_.frame_index;
  result.frame_size = frame_size;
  result.memory_frames = state_.memory.valid_frames();
  if (is_memory_frame(state_.frame_index, memory_stride_)) {
    push_memory(state_.memory, features.memory_feature, state_.frame_index);
  }
  state_.frame_index += 1;
  state_.frame_size = frame_size;
  for (size_t i = 0; i < detections.size(); ++i) {
    Detection& d = detections[i];
    result.objects.push_back(ObjectResult{obj_ids[i], d.prompt, d.mask, d.box_xyxy, d.score_prob});
  }
  result.latency_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace esam3

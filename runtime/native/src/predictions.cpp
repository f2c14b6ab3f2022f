#include "esam3/predictions.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "esam3/error.h"
#include "esam3/rle.h"

namespace esam3 {

MaskletRecorder::MaskletRecorder(std::string video_id, cv::Size frame_size)
    : video_id_(std::move(video_id)), frame_size_(frame_size) {}

void MaskletRecorder::add(int frame_number, const std::vector<ObjectResult>& objects) {
  if (!frame_numbers_.empty() && frame_number <= frame_numbers_.back()) {
    throw Esam3Error("frame " + std::to_string(frame_number) + " recorded after frame " + std::to_string(frame_numbers_.back()));
  }
  std::map<int, std::string> entry;
  for (const ObjectResult& obj : objects) {
    if (obj.mask.size() != frame_size_) {
      throw Esam3Error("frame " + std::to_string(frame_number) + ": mask of object " + std::to_string(obj.obj_id) +
                       " differs from the video's size");
    }
    if (entry.count(obj.obj_id)) {
      throw Esam3Error("frame " + std::to_string(frame_number) + ": object id " + std::to_string(obj.obj_id) + " appears twice");
    }
    const bool known = std::any_of(categories_.begin(), categories_.end(),
                                   [&](const std::pair<int, std::string>& c) { return c.first == obj.obj_id; });
    if (!known) {
      categories_.emplace_back(obj.obj_id, obj.prompt);
    }
    entry[obj.obj_id] = encode_rle(obj.mask);
  }
  frame_numbers_.push_back(frame_number);
  entries_.push_back(std::move(entry));
}

std::string MaskletRecorder::to_json() const {
  using nlohmann::ordered_json;
  const std::string empty = encode_rle(cv::Mat::zeros(frame_size_, CV_8U));
  const ordered_json size = {frame_size_.height, frame_size_.width};
  ordered_json ids = ordered_json::array(), prompts = ordered_json::array(), masklet = ordered_json::array();
  for (const auto& [obj_id, prompt] : categories_) {
    ids.push_back(obj_id);
    prompts.push_back(prompt);
  }
  for (const std::map<int, std::string>& entry : entries_) {
    ordered_json row = ordered_json::array();
    for (const auto& [obj_id, prompt] : categories_) {
      auto found = entry.find(obj_id);
      row.push_back(ordered_json{{"size", size}, {"counts", found == entry.end() ? empty : found->second}});
    }
    masklet.push_back(std::move(row));
  }
  ordered_json document;
  document["video_id"] = video_id_;
  document["video_height"] = frame_size_.height;
  document["video_width"] = frame_size_.width;
  document["frame_indices"] = frame_numbers_;
  document["masklet_id"] = std::move(ids);
  document["masklet_category"] = std::move(prompts);
  document["masklet"] = std::move(masklet);
  return document.dump(-1, ' ', /*ensure_ascii=*/true);
}

}  // namespace esam3

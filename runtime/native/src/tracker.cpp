#include "esam3/tracker.h"

#include <map>

#include "esam3/assignment.h"
#include "esam3/error.h"
#include "esam3/postprocess.h"

namespace esam3 {

void TrackerConfig::validate() const {
  if (!(min_iou > 0.0 && min_iou <= 1.0)) {
    throw Esam3Error("min_iou must be in (0, 1], got " + std::to_string(min_iou));
  }
  if (max_missed_frames < 0) {
    throw Esam3Error("max_missed_frames must be >= 0, got " + std::to_string(max_missed_frames));
  }
}

std::vector<int> update_tracks(TrackerState& state, const std::vector<std::string>& prompts,
                               const std::vector<cv::Mat>& masks, const TrackerConfig& config) {
  if (prompts.size() != masks.size()) {
    throw Esam3Error(std::to_string(prompts.size()) + " prompts but " + std::to_string(masks.size()) + " masks");
  }
  std::vector<int> obj_ids(masks.size(), 0);  // 0 = not matched yet (ids start at 1)
  std::map<size_t, cv::Mat> matched;          // track index -> new mask
  std::vector<std::string> seen;              // each prompt once, in order of first appearance
  for (const std::string& prompt : prompts) {
    bool done = false;
    for (const std::string& earlier : seen) {
      done = done || earlier == prompt;
    }
    if (done) {
      continue;
    }
    seen.push_back(prompt);
    std::vector<size_t> det_index, track_index;
    for (size_t i = 0; i < prompts.size(); ++i) {
      if (prompts[i] == prompt) {
        det_index.push_back(i);
      }
    }
    for (size_t t = 0; t < state.tracks.size(); ++t) {
      if (state.tracks[t].prompt == prompt) {
        track_index.push_back(t);
      }
    }
    if (det_index.empty() || track_index.empty()) {
      continue;
    }
    const int rows = static_cast<int>(det_index.size()), cols = static_cast<int>(track_index.size());
    std::vector<double> iou(static_cast<size_t>(rows) * cols);  // [D, T]
    for (int d = 0; d < rows; ++d) {
      for (int t = 0; t < cols; ++t) {
        iou[static_cast<size_t>(d) * cols + t] = mask_iou(masks[det_index[d]], state.tracks[track_index[t]].mask);
      }
    }
    for (const auto& [d, t] : linear_sum_assignment(iou, rows, cols, /*maximize=*/true)) {
      if (iou[static_cast<size_t>(d) * cols + t] >= config.min_iou) {
        obj_ids[det_index[d]] = state.tracks[track_index[t]].obj_id;
        matched[track_index[t]] = masks[det_index[d]];
      }
    }
  }

  std::vector<Track> tracks;
  for (size_t index = 0; index < state.tracks.size(); ++index) {
    const Track& track = state.tracks[index];
    auto found = matched.find(index);
    if (found != matched.end()) {
      tracks.push_back(Track{track.obj_id, track.prompt, found->second, 0});
    } else if (track.missed + 1 <= config.max_missed_frames) {
      tracks.push_back(Track{track.obj_id, track.prompt, track.mask, track.missed + 1});
    }
  }
  for (size_t i = 0; i < obj_ids.size(); ++i) {
    if (obj_ids[i] == 0) {
      obj_ids[i] = state.next_id;
      tracks.push_back(Track{state.next_id, prompts[i], masks[i], 0});
      ++state.next_id;
    }
  }
  state.tracks = std::move(tracks);
  return obj_ids;
}

}  // namespace esam3

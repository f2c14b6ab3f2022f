// Object ids across frames; mirrors runtime/tracker.py.
//
// Per prompt, the detections of a frame are matched one-to-one to the live tracks of the same prompt,
// maximising the summed IoU between a detection's mask and the track's last mask (Hungarian); a pair counts
// only when its IoU is at least min_iou. A matched detection takes the track's id, an unmatched one starts a
// new track with a new id (unique over all prompts, never reused), and a track unmatched for more than
// max_missed_frames consecutive frames is retired. Masks may have any resolution that stays the same over the
// stream; the session passes the model's [M, M] masks, so association cost does not grow with the frame size.
#pragma once

#include <string>
#include <vector>

#include <opencv2/core.hpp>

namespace esam3 {

struct TrackerConfig {
  double min_iou = 0.3;
  int max_missed_frames = 8;

  void validate() const;
};

// A live object: mask is its last matched mask; missed counts the frames since it was last matched.
struct Track {
  int obj_id;
  std::string prompt;
  cv::Mat mask;
  int missed = 0;
};

struct TrackerState {
  std::vector<Track> tracks;
  int next_id = 1;
};

// One frame of association. prompts[i], masks[i]: detection i. Returns the object id of each detection and
// replaces `state` with the new one.
std::vector<int> update_tracks(TrackerState& state, const std::vector<std::string>& prompts,
                               const std::vector<cv::Mat>& masks, const TrackerConfig& config);

}  // namespace esam3

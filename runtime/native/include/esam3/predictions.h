// SA-V-style masklet JSON of a processed video, the format of runtime/predictions.py (what
// training.evaluate reads):
// {"video_id", "video_height", "video_width", "frame_indices": [video frame of each entry],
//  "masklet_id": [object ids in order of first appearance], "masklet_category": [prompt of each object],
//  "masklet": [[COCO RLE per object, in masklet_id order] per recorded frame]}
// RLEs are compressed COCO RLE at the video's size; an object absent from a frame has the empty mask's RLE.
// Only the compressed counts are kept while recording.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include <opencv2/core.hpp>

#include "esam3/session.h"

namespace esam3 {

class MaskletRecorder {
 public:
  MaskletRecorder(std::string video_id, cv::Size frame_size);

  // Record the objects of video frame `frame_number` (ascending, each once).
  void add(int frame_number, const std::vector<ObjectResult>& objects);

  size_t num_frames() const { return frame_numbers_.size(); }
  size_t num_objects() const { return categories_.size(); }

  // The JSON document (compact, as json.dump writes it).
  std::string to_json() const;

 private:
  std::string video_id_;
  cv::Size frame_size_;
  std::vector<int> frame_numbers_;
  std::vector<std::map<int, std::string>> entries_;          // per frame: obj_id -> RLE counts
  std::vector<std::pair<int, std::string>> categories_;      // (obj_id, prompt), order of first appearance
};

}  // namespace esam3

// Frame sources (a video file, or a directory of JPEG frames) and the overlay video; mirrors
// runtime/video_io.py.
//
// Sources yield (frame_number, frame) with frame BGR CV_8UC3, as OpenCV decodes it:
// - a video file (mp4, avi, ...): frame numbers 0, 1, 2, ...;
// - a directory of *.jpg / *.jpeg frames (SA-V JPEGImages_24fps/<video_id>/00000.jpg): frames in numeric
//   order of their file names, which are their frame numbers (positions when not all names are numbers).
// Unreadable inputs and zero-frame videos throw Esam3Error naming the file.
#pragma once

#include <array>
#include <string>
#include <utility>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/videoio.hpp>

#include "esam3/session.h"

namespace esam3 {

constexpr double kDefaultDirectoryFps = 24.0;  // SA-V JPEGImages_24fps

// video_id: file stem or directory name; num_frames: the container's count (may be approximate).
struct VideoInfo {
  std::string video_id;
  std::string path;
  int num_frames;
  double fps;
  int height;
  int width;
};

class FrameSource {
 public:
  explicit FrameSource(const std::string& path);
  const VideoInfo& info() const { return info_; }
  // Next frame into `frame`; false at the end of the video.
  bool next(int& frame_number, cv::Mat& frame);

 private:
  VideoInfo info_;
  cv::VideoCapture capture_;
  std::vector<std::pair<int, std::string>> files_;  // directory sources: (frame number, path)
  size_t position_ = 0;
  cv::Mat first_;
};

// A stable, well separated BGR colour per object id (golden-ratio hue steps).
cv::Scalar object_colour(int obj_id);

// BGR frame + objects -> a new BGR frame with tinted masks, boxes and "id prompt score".
cv::Mat draw_overlay(const cv::Mat& frame, const std::vector<ObjectResult>& objects, double alpha = 0.5);

// mp4v writer that appears at `path` only when committed (written to a temp name, then renamed).
class OverlayVideoWriter {
 public:
  OverlayVideoWriter(const std::string& path, double fps, cv::Size frame_size);
  ~OverlayVideoWriter();  // discards the temp file unless commit() ran
  void write(const cv::Mat& frame);
  void commit();

 private:
  std::string path_;
  std::string tmp_path_;
  cv::Size frame_size_;
  cv::VideoWriter writer_;
  bool closed_ = false;
};

// Write `text` to `path` atomically (temp file in the same directory, then rename).
void write_file_atomically(const std::string& path, const std::string& text);

}  // namespace esam3

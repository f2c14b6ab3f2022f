// Frame sources (a video file, or a directory of JPEG frames) and the overlay video; mirrors
// runtime/video_io.py. Live sources (camera, stream, stdin) are in live_source.h.
//
// Sources yield (frame_number, frame) with frame BGR CV_8UC3, as OpenCV decodes it:
// - a video file (mp4, avi, ...): frame numbers 0, 1, 2, ...;
// - a directory of *.jpg / *.jpeg frames (SA-V JPEGImages_24fps/<video_id>/00000.jpg): frames in numeric
//   order of their file names, which are their frame numbers (positions when not all names are numbers).
// Unreadable inputs and zero-frame videos throw Esam3Error naming the file. Damage that still decodes is a
// "warning: ..." line on stderr naming the file and the frame: a truncated JPEG (its missing part decodes
// grey), a video file that ends before the frame count its container lists.
#pragma once

#include <array>
#include <string>
#include <utility>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/videoio.hpp>

#include "esam3/output_files.h"
#include "esam3/session.h"

namespace esam3 {

constexpr double kDefaultDirectoryFps = 24.0;  // SA-V JPEGImages_24fps
// FFmpeg's mp4v encoder refuses frames 1 pixel high or wide (measured; runtime/video_io.py OVERLAY_MIN_SIDE).
constexpr int kOverlayMinSide = 2;

// video_id: file stem or directory name; num_frames: the container's count (may be approximate; 0 for a live
// source, whose end is not known in advance); live: a camera, stream or stdin (live_source.h), whose path is
// the --video text as given.
struct VideoInfo {
  std::string video_id;
  std::string path;
  int num_frames;
  double fps;
  int height;
  int width;
  bool live = false;
};

// What the runner reads frames from: a file or folder (FrameSource) or a live source (live_source.h).
class FrameInput {
 public:
  virtual ~FrameInput() = default;
  virtual const VideoInfo& info() const = 0;
  // Next frame into `frame`; false at the end of the video (or of the stream, or after stop()).
  virtual bool next(int& frame_number, cv::Mat& frame) = 0;
  // Called from another thread: end a read the source is blocked in (live sources); next() then returns false.
  virtual void stop() {}
  // Replace the rate the source reports (--fps).
  void set_fps(double fps) { info_.fps = fps; }

 protected:
  VideoInfo info_;
};

class FrameSource : public FrameInput {
 public:
  explicit FrameSource(const std::string& path);
  const VideoInfo& info() const override { return info_; }
  bool next(int& frame_number, cv::Mat& frame) override;

 private:
  cv::VideoCapture capture_;
  std::vector<std::pair<int, std::string>> files_;  // directory sources: (frame number, path)
  size_t position_ = 0;
  bool ended_ = false;
  cv::Mat first_;
};

// A stable, well separated BGR colour per object id (golden-ratio hue steps).
cv::Scalar object_colour(int obj_id);

// BGR frame + objects -> a new BGR frame with tinted masks, boxes and "id prompt score".
cv::Mat draw_overlay(const cv::Mat& frame, const std::vector<ObjectResult>& objects, double alpha = 0.5);

// Throws Esam3Error naming `path` when frames of `frame_size` cannot be encoded as mp4v.
void check_overlay_frame_size(const std::string& path, cv::Size frame_size);

// mp4v writer whose video appears at `path` only whole: frames go to a unique temp name (StagedFile);
// finish() closes the video and reads it back (OpenCV's writer reports no error when the disk fills up:
// the frame count must equal the frames written and the first frame must decode), commit() then renames
// it into place. Destroyed without commit(), the temp file is removed.
class OverlayVideoWriter {
 public:
  OverlayVideoWriter(const std::string& path, double fps, cv::Size frame_size);
  void write(const cv::Mat& frame);
  void finish();
  void commit();

 private:
  std::string path_;
  cv::Size frame_size_;
  StagedFile staged_;
  cv::VideoWriter writer_;  // declared after staged_: released before the temp file is removed
  int frames_written_ = 0;
  bool checked_ = false;
};

}  // namespace esam3

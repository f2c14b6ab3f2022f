// Live frame sources (a camera, a network stream, raw frames on standard input) and the one place that turns a
// --video argument into a source; mirrors runtime/live_sources.py.
//
// --video is read as (video_kind): "-" = raw bgr24 frames on stdin, exactly width * height * 3 bytes each (what
// `ffmpeg ... -f rawvideo -pix_fmt bgr24 -` writes), the size from --size WxH; all digits = a camera index
// (cv::VideoCapture(index)); anything containing "://" = a stream OpenCV's FFmpeg backend opens; otherwise a
// video file or a JPEG frame folder (FrameSource). A live source has no end known in advance: frames 0, 1, 2,
// ... until the stream ends (EOF on stdin, the stream closing) or stop() is called. Video ids: camera<N>, stdin,
// and for a URL the last path component's stem (else the host) reduced to [A-Za-z0-9_-]. A source that cannot
// be opened throws Esam3Error naming it; a partial last frame on stdin is a "warning: stdin: ..." line and is
// dropped.
#pragma once

#include <atomic>
#include <csignal>
#include <memory>
#include <optional>
#include <string>

#include <opencv2/core.hpp>
#include <opencv2/videoio.hpp>

#include "esam3/video_io.h"

namespace esam3 {

// --fps above this is refused, and a camera or stream reporting more is not believed (runtime/live_sources.py
// MAX_FPS): the overlay video's mp4v encoder refuses rates past 65535, and no live source we read comes close.
constexpr double kMaxFps = 1000;

enum class VideoKind { kFile, kStdin, kCamera, kStream };

VideoKind video_kind(const std::string& video);

// The last path component's stem of `url` (else its host), reduced to [A-Za-z0-9_-].
std::string stream_video_id(const std::string& url);

// Throws Esam3Error("--size: ...") unless a frame size is given exactly when `video` is stdin.
void check_frame_size_option(const std::string& video, const std::optional<cv::Size>& size);

// The source `video` names. fps > 0 overrides the rate the source reports (kDefaultDirectoryFps when none
// does). stop_signal (may be null): a stdin source waiting for its first frame throws Interrupted when set.
std::unique_ptr<FrameInput> open_frame_input(const std::string& video, const std::optional<cv::Size>& size,
                                             double fps, const volatile std::sig_atomic_t* stop_signal);

// A camera (all digits) or a stream URL, read through cv::VideoCapture.
class CaptureSource : public FrameInput {
 public:
  CaptureSource(const std::string& source, double fps);
  const VideoInfo& info() const override { return info_; }
  bool next(int& frame_number, cv::Mat& frame) override;
  void stop() override { stopping_ = true; }

 private:
  cv::VideoCapture capture_;
  cv::Mat first_;
  int position_ = 0;
  std::atomic<bool> stopping_{false};
};

// Raw bgr24 frames of `size` on standard input.
class StdinSource : public FrameInput {
 public:
  StdinSource(cv::Size size, double fps, const volatile std::sig_atomic_t* stop_signal);
  const VideoInfo& info() const override { return info_; }
  bool next(int& frame_number, cv::Mat& frame) override;
  void stop() override { stopping_ = true; }

 private:
  // The next whole frame; false at EOF (a partial frame is a warning) or when stopped.
  bool read_frame(cv::Mat& frame);

  size_t frame_bytes_;
  cv::Mat first_;
  int position_ = 0;
  const volatile std::sig_atomic_t* stop_signal_;
  std::atomic<bool> stopping_{false};
};

}  // namespace esam3

#include "esam3/live_source.h"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include <opencv2/core/utils/logger.hpp>

#include "esam3/error.h"

namespace esam3 {

namespace {

constexpr int kStdinPollMs = 100;  // how often a blocked stdin read looks whether it should stop

bool all_digits(const std::string& text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); });
}

// OpenCV's own warnings off while a camera or stream is opened: a failure is our one error line.
class OpenCvQuiet {
 public:
  OpenCvQuiet() : previous_(cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_ERROR)) {}
  ~OpenCvQuiet() { cv::utils::logging::setLogLevel(previous_); }

 private:
  cv::utils::logging::LogLevel previous_;
};

}  // namespace

VideoKind video_kind(const std::string& video) {
  if (video == "-") {
    return VideoKind::kStdin;
  }
  if (all_digits(video)) {
    return VideoKind::kCamera;
  }
  if (video.find("://") != std::string::npos) {
    return VideoKind::kStream;
  }
  return VideoKind::kFile;
}

std::string stream_video_id(const std::string& url) {
  // scheme://[user@]host[:port][/path][?query][#fragment]
  std::string rest = url.substr(url.find("://") + 3);
  rest = rest.substr(0, rest.find_first_of("?#"));
  const size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  std::string path = slash == std::string::npos ? "" : rest.substr(slash);
  while (!path.empty() && path.back() == '/') {
    path.pop_back();
  }
  std::string name = path.substr(path.find_last_of('/') + 1);
  const size_t dot = name.find_last_of('.');
  if (dot != std::string::npos && dot > 0) {
    name = name.substr(0, dot);  // the stem, as PurePosixPath.stem
  }
  if (name.empty()) {
    authority = authority.substr(authority.find('@') + 1);
    if (!authority.empty() && authority.front() == '[') {
      name = authority.substr(1, authority.find(']') - 1);  // [ipv6]
    } else {
      name = authority.substr(0, authority.find(':'));
    }
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  }
  if (name.empty()) {
    name = "stream";
  }
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') {
      c = '_';
    }
  }
  return name;
}

void check_frame_size_option(const std::string& video, const std::optional<cv::Size>& size) {
  const bool stdin_source = video_kind(video) == VideoKind::kStdin;
  if (stdin_source && !size) {
    throw Esam3Error("--size: required with --video - (the WIDTHxHEIGHT of the raw bgr24 frames on stdin)");
  }
  if (!stdin_source && size) {
    throw Esam3Error("--size: only for --video - (raw frames on stdin); a video file, frame folder, camera or "
                     "stream has its own frame size");
  }
}

std::unique_ptr<FrameInput> open_frame_input(const std::string& video, const std::optional<cv::Size>& size,
                                             double fps, const volatile std::sig_atomic_t* stop_signal) {
  check_frame_size_option(video, size);
  switch (video_kind(video)) {
    case VideoKind::kStdin:
      return std::make_unique<StdinSource>(*size, fps > 0 ? fps : kDefaultDirectoryFps, stop_signal);
    case VideoKind::kCamera:
    case VideoKind::kStream:
      return std::make_unique<CaptureSource>(video, fps);
    case VideoKind::kFile:
      break;
  }
  auto source = std::make_unique<FrameSource>(video);
  if (fps > 0) {
    source->set_fps(fps);
  }
  return source;
}

CaptureSource::CaptureSource(const std::string& source, double fps) {
  const bool camera = all_digits(source);
  bool ok = false;
  {
    OpenCvQuiet quiet;
    const bool opened = camera ? capture_.open(std::stoi(source)) : capture_.open(source, cv::CAP_FFMPEG);
    ok = opened && capture_.read(first_) && !first_.empty();
  }
  if (!ok) {
    capture_.release();
    throw Esam3Error(source + (camera ? ": cannot open camera " + std::to_string(std::stoi(source)) +
                                           " (no such device, busy, or no permission)"
                                     : ": cannot open the stream (unreachable, refused, or not a stream OpenCV's "
                                       "FFmpeg backend reads)"));
  }
  if (first_.type() != CV_8UC3) {
    throw Esam3Error(source + ": frames are not 8-bit BGR");
  }
  const double reported = capture_.get(cv::CAP_PROP_FPS);
  const double rate = fps > 0 ? fps : (reported > 0 && reported <= kMaxFps ? reported : kDefaultDirectoryFps);
  info_ = VideoInfo{camera ? "camera" + std::to_string(std::stoi(source)) : stream_video_id(source), source, 0, rate,
                    first_.rows, first_.cols, true};
}

bool CaptureSource::next(int& frame_number, cv::Mat& frame) {
  if (position_ == 0) {
    frame = first_;
    first_ = cv::Mat();
    frame_number = position_++;
    return true;
  }
  if (stopping_ || !capture_.read(frame) || frame.empty()) {
    return false;
  }
  frame_number = position_++;
  return true;
}

StdinSource::StdinSource(cv::Size size, double fps, const volatile std::sig_atomic_t* stop_signal)
    : frame_bytes_(static_cast<size_t>(size.width) * size.height * 3), stop_signal_(stop_signal) {
  info_ = VideoInfo{"stdin", "-", 0, fps, size.height, size.width, true};
  if (!read_frame(first_)) {
    if (stop_signal_ != nullptr && *stop_signal_ != 0) {
      throw Interrupted("-: interrupted (signal " + std::to_string(*stop_signal_) + "); nothing was written");
    }
    throw Esam3Error("stdin: the stream ended before a first whole " + std::to_string(size.width) + "x" +
                     std::to_string(size.height) + " bgr24 frame (" + std::to_string(frame_bytes_) + " bytes)");
  }
}

bool StdinSource::read_frame(cv::Mat& frame) {
  cv::Mat buffer(info_.height, info_.width, CV_8UC3);
  size_t filled = 0;
  while (filled < frame_bytes_) {
    // Before the first frame the run's stop flag ends the wait (the reader thread uses stop() later on).
    if (stopping_ || (position_ == 0 && first_.empty() && stop_signal_ != nullptr && *stop_signal_ != 0)) {
      return false;
    }
    pollfd ready{STDIN_FILENO, POLLIN, 0};
    const int polled = ::poll(&ready, 1, kStdinPollMs);
    if (polled < 0 && errno != EINTR) {
      throw Esam3Error(std::string("stdin: cannot read (") + std::strerror(errno) + ")");
    }
    if (polled <= 0) {
      continue;
    }
    const ssize_t got = ::read(STDIN_FILENO, buffer.data + filled, frame_bytes_ - filled);
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN) {
        continue;
      }
      throw Esam3Error(std::string("stdin: cannot read (") + std::strerror(errno) + ")");
    }
    if (got == 0) {
      if (filled > 0) {
        std::fprintf(stderr, "warning: stdin: the stream ended inside a frame (%zu of %zu bytes); that partial frame "
                     "is dropped\n", filled, frame_bytes_);
      }
      return false;
    }
    filled += static_cast<size_t>(got);
  }
  frame = buffer;
  return true;
}

bool StdinSource::next(int& frame_number, cv::Mat& frame) {
  if (position_ == 0) {
    frame = first_;
    first_ = cv::Mat();
    frame_number = position_++;
    return true;
  }
  if (!read_frame(frame)) {
    return false;
  }
  frame_number = position_++;
  return true;
}

}  // namespace esam3

#include "esam3/video_io.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio/registry.hpp>

#include "esam3/error.h"

namespace esam3 {
namespace fs = std::filesystem;

namespace {

bool is_digits(const std::string& text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); });
}

// No end-of-image marker after the last start-of-scan marker: the JPEG was cut short (libjpeg fills the
// missing rows with grey and only prints "Premature end of JPEG file"). runtime/video_io.py jpeg_is_truncated.
bool jpeg_is_truncated(const std::string& path) {
  std::ifstream stream(path, std::ios::binary | std::ios::ate);
  std::string data(static_cast<size_t>(std::max<std::streamoff>(stream.tellg(), 0)), '\0');
  stream.seekg(0);
  stream.read(data.data(), static_cast<std::streamsize>(data.size()));
  const size_t scan = data.rfind("\xff\xda");
  return scan != std::string::npos && data.find("\xff\xd9", scan) == std::string::npos;
}

cv::Mat read_frame_file(int frame_number, const std::string& path) {
  cv::Mat frame = cv::imread(path, cv::IMREAD_COLOR);
  if (frame.empty()) {
    throw Esam3Error(path + ": unreadable image");
  }
  if (jpeg_is_truncated(path)) {
    std::fprintf(stderr, "warning: %s: frame %d is a truncated JPEG (no end-of-image marker); its missing part decodes as grey\n",
                 path.c_str(), frame_number);
  }
  return frame;
}

// FFmpeg, as the Python runtime's OpenCV decodes, when this OpenCV build has it; else OpenCV's choice.
int video_backend() { return cv::videoio_registry::hasBackend(cv::CAP_FFMPEG) ? cv::CAP_FFMPEG : cv::CAP_ANY; }

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text;
}

}  // namespace

FrameSource::FrameSource(const std::string& path) {
  std::error_code error;
  const fs::path source(path);
  if (fs::is_directory(source, error)) {
    std::vector<fs::path> files;
    for (const fs::directory_entry& entry : fs::directory_iterator(source, error)) {
      const std::string suffix = lower(entry.path().extension().string());
      if (entry.is_regular_file() && (suffix == ".jpg" || suffix == ".jpeg")) {
        files.push_back(entry.path());
      }
    }
    if (files.empty()) {
      throw Esam3Error(path + ": no .jpg/.jpeg frames in this directory");
    }
    const bool numbered = std::all_of(files.begin(), files.end(), [](const fs::path& p) { return is_digits(p.stem().string()); });
    if (numbered) {
      for (const fs::path& file : files) {
        files_.emplace_back(std::stoi(file.stem().string()), file.string());
      }
      std::sort(files_.begin(), files_.end());
    } else {
      std::sort(files.begin(), files.end());
      for (size_t i = 0; i < files.size(); ++i) {
        files_.emplace_back(static_cast<int>(i), files[i].string());
      }
    }
    first_ = read_frame_file(files_[0].first, files_[0].second);
    info_ = VideoInfo{source.filename().string(), path, static_cast<int>(files_.size()), kDefaultDirectoryFps,
                      first_.rows, first_.cols};
    return;
  }
  if (!fs::is_regular_file(source, error)) {
    throw Esam3Error(path + ": no such video file or frame directory");
  }
  const bool opened = capture_.open(path, video_backend());
  if (!opened || !capture_.read(first_) || first_.empty()) {
    throw Esam3Error(path + ": cannot decode a first frame (not a video, corrupt, or zero frames)");
  }
  if (first_.type() != CV_8UC3) {
    throw Esam3Error(path + ": frames are not 8-bit BGR");
  }
  const double fps = capture_.get(cv::CAP_PROP_FPS);
  const int count = static_cast<int>(capture_.get(cv::CAP_PROP_FRAME_COUNT));
  info_ = VideoInfo{source.stem().string(), path, std::max(count, 1), fps > 0 ? fps : kDefaultDirectoryFps,
                    first_.rows, first_.cols};
}

bool FrameSource::next(int& frame_number, cv::Mat& frame) {
  if (position_ == 0 && !first_.empty()) {
    frame_number = files_.empty() ? 0 : files_[0].first;
    frame = first_;
    first_ = cv::Mat();
    ++position_;
    return true;
  }
  if (!files_.empty()) {
    if (position_ >= files_.size()) {
      return false;
    }
    frame_number = files_[position_].first;
    frame = read_frame_file(files_[position_].first, files_[position_].second);
    if (frame.size() != cv::Size(info_.width, info_.height)) {
      throw Esam3Error(files_[position_].second + ": frame is " + std::to_string(frame.rows) + "x" + std::to_string(frame.cols) +
                       ", the first frame of " + info_.path + " is " + std::to_string(info_.height) + "x" +
                       std::to_string(info_.width));
    }
    ++position_;
    return true;
  }
  if (!capture_.read(frame) || frame.empty()) {
    if (!ended_ && static_cast<int>(position_) < info_.num_frames) {
      std::fprintf(stderr, "warning: %s: decoding stopped at frame %zu, the container lists %d frames (the file is "
                   "truncated or corrupt); the %zu decoded frames are used\n", info_.path.c_str(), position_,
                   info_.num_frames, position_);
    }
    ended_ = true;
    return false;
  }
  frame_number = static_cast<int>(position_++);
  return true;
}

cv::Scalar object_colour(int obj_id) {
  // colorsys.hsv_to_rgb(hue, 0.85, 1.0) with hue = obj_id * golden ratio (mod 1).
  const double hue = std::fmod(obj_id * 0.618033988749895, 1.0), saturation = 0.85, value = 1.0;
  const int sector = static_cast<int>(hue * 6.0);
  const double f = hue * 6.0 - sector;
  const double p = value * (1.0 - saturation), q = value * (1.0 - saturation * f);
  const double t = value * (1.0 - saturation * (1.0 - f));
  double r, g, b;
  switch (sector % 6) {
    case 0: r = value, g = t, b = p; break;
    case 1: r = q, g = value, b = p; break;
    case 2: r = p, g = value, b = t; break;
    case 3: r = p, g = q, b = value; break;
    case 4: r = t, g = p, b = value; break;
    default: r = value, g = p, b = q; break;
  }
  return cv::Scalar(static_cast<int>(b * 255), static_cast<int>(g * 255), static_cast<int>(r * 255));
}

cv::Mat draw_overlay(const cv::Mat& frame, const std::vector<ObjectResult>& objects, double alpha) {
  cv::Mat canvas = frame.clone();
  for (const ObjectResult& obj : objects) {
    const cv::Scalar colour = object_colour(obj.obj_id);
    for (int y = 0; y < canvas.rows; ++y) {
      const uint8_t* inside = obj.mask.ptr<uint8_t>(y);
      cv::Vec3b* pixel = canvas.ptr<cv::Vec3b>(y);
      for (int x = 0; x < canvas.cols; ++x) {
        if (inside[x]) {
          for (int c = 0; c < 3; ++c) {
            pixel[x][c] = static_cast<uint8_t>((1 - alpha) * pixel[x][c] + alpha * colour[c]);
          }
        }
      }
    }
  }
  for (const ObjectResult& obj : objects) {
    const cv::Scalar colour = object_colour(obj.obj_id);
    const int x1 = static_cast<int>(std::lround(obj.box_xyxy[0])), y1 = static_cast<int>(std::lround(obj.box_xyxy[1]));
    const int x2 = static_cast<int>(std::lround(obj.box_xyxy[2])), y2 = static_cast<int>(std::lround(obj.box_xyxy[3]));
    cv::rectangle(canvas, cv::Point(x1, y1), cv::Point(x2 - 1, y2 - 1), colour, 2);
    char score[16];
    std::snprintf(score, sizeof(score), "%.2f", obj.score);
    const std::string label = std::to_string(obj.obj_id) + " " + obj.prompt + " " + score;
    cv::putText(canvas, label, cv::Point(x1, std::max(y1 - 4, 12)), cv::FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv::LINE_AA);
  }
  return canvas;
}

void check_overlay_frame_size(const std::string& path, cv::Size frame_size) {
  if (std::min(frame_size.width, frame_size.height) < kOverlayMinSide) {
    const std::string side = std::to_string(kOverlayMinSide);
    throw Esam3Error(path + ": the frame size " + std::to_string(frame_size.height) + "x" + std::to_string(frame_size.width) +
                     " is too small for the mp4v codec of the overlay video (it needs at least " + side + "x" + side +
                     " pixels)");
  }
}

OverlayVideoWriter::OverlayVideoWriter(const std::string& path, double fps, cv::Size frame_size)
    : path_(path), frame_size_(frame_size), staged_(path, fs::path(path).extension().empty() ? ".mp4" : fs::path(path).extension().string()) {
  check_overlay_frame_size(path, frame_size);
  const int fourcc = cv::VideoWriter::fourcc('m', 'p', '4', 'v');
  if (!writer_.open(staged_.temp(), video_backend(), fourcc, fps, frame_size)) {
    throw Esam3Error(path + ": cannot open an mp4v video writer (the folder is not writable or this OpenCV has no mp4v "
                     "encoder)");
  }
}

void OverlayVideoWriter::write(const cv::Mat& frame) {
  if (frame.size() != frame_size_) {
    throw Esam3Error(path_ + ": frame size differs from the video's");
  }
  writer_.write(frame);
  ++frames_written_;
}

void OverlayVideoWriter::finish() {
  if (checked_) {
    return;
  }
  writer_.release();
  if (frames_written_ == 0) {
    throw Esam3Error(path_ + ": no frame was written to the overlay video; nothing was moved into place");
  }
  cv::VideoCapture capture;
  int frames_found = 0;
  bool first_decodes = false;
  if (capture.open(staged_.temp(), video_backend())) {
    frames_found = static_cast<int>(capture.get(cv::CAP_PROP_FRAME_COUNT));
    cv::Mat first;
    first_decodes = capture.read(first) && !first.empty();
  }
  if (frames_found != frames_written_ || !first_decodes) {
    throw Esam3Error(path_ + ": the overlay video was not written completely (" + std::to_string(frames_found) + " of " +
                     std::to_string(frames_written_) + " frames read back; is the disk full?); nothing was moved into place");
  }
  checked_ = true;
}

void OverlayVideoWriter::commit() {
  finish();
  staged_.commit();
}

}  // namespace esam3

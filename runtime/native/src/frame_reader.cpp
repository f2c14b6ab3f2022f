#include "esam3/frame_reader.h"

#include <chrono>

namespace esam3 {

namespace {

constexpr size_t kQueueFrames = 4;  // keep_all: frames read ahead of the loop
constexpr auto kWait = std::chrono::milliseconds(50);  // how often a waiting take() looks at its stop check

}  // namespace

FrameReader::FrameReader(FrameInput& source, bool keep_all, double pace_fps)
    : source_(source), keep_all_(keep_all), pace_fps_(pace_fps), thread_([this] { read(); }) {}

FrameReader::~FrameReader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  source_.stop();
  changed_.notify_all();
  thread_.join();
}

void FrameReader::read() {
  const auto start = std::chrono::steady_clock::now();
  try {
    int number = 0;
    cv::Mat frame;
    for (long index = 0;; ++index) {
      if (!source_.next(number, frame)) {
        break;
      }
      std::unique_lock<std::mutex> lock(mutex_);
      if (pace_fps_ > 0) {
        const auto due = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                     std::chrono::duration<double>(index / pace_fps_));
        changed_.wait_until(lock, due, [this] { return stopping_; });
      }
      if (keep_all_) {
        changed_.wait(lock, [this] { return stopping_ || buffer_.size() < kQueueFrames; });
      }
      if (stopping_) {
        break;
      }
      if (!keep_all_ && !buffer_.empty()) {
        buffer_.pop_front();  // overwritten before the loop took it
        ++dropped_;
      }
      buffer_.emplace_back(number, frame);
      frame = cv::Mat();  // the next frame decodes into a new buffer, not into the one just queued
      changed_.notify_all();
    }
  } catch (...) {  // thrown again in the loop's thread by take()
    std::lock_guard<std::mutex> lock(mutex_);
    error_ = std::current_exception();
  }
  std::lock_guard<std::mutex> lock(mutex_);
  ended_ = true;
  changed_.notify_all();
}

bool FrameReader::take(int& frame_number, cv::Mat& frame, const std::function<bool()>& stop_requested) {
  std::unique_lock<std::mutex> lock(mutex_);
  while (buffer_.empty()) {
    if (error_) {
      std::rethrow_exception(error_);
    }
    if (ended_ || stop_requested()) {
      return false;
    }
    changed_.wait_for(lock, kWait);
  }
  frame_number = buffer_.front().first;
  frame = buffer_.front().second;
  buffer_.pop_front();
  changed_.notify_all();
  return true;
}

int FrameReader::dropped() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return dropped_;
}

}  // namespace esam3

// Read a frame source in a background thread, so the processing loop never blocks on the source and sees a stop
// request (SIGINT, SIGTERM) while a live source has nothing new; mirrors runtime/frame_reader.py.
//
// keep_all (a live source without --realtime): a small queue; the reader waits when it is full, so every frame
// is processed. Otherwise (--realtime) a one-slot latest-frame buffer the reader overwrites: take() always gets
// the newest frame, and a frame overwritten before it was taken counts in dropped(). pace_fps > 0 (a video file or
// frame folder under --realtime): frame i becomes available at t0 + i / pace_fps, as a camera would deliver it.
// Frame numbers stay the source's. An exception in the reader is thrown again by take().
#pragma once

#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>

#include <opencv2/core.hpp>

#include "esam3/video_io.h"

namespace esam3 {

class FrameReader {
 public:
  // Starts the thread; the destructor stops it (calling source.stop() for a read it is blocked in) and joins it.
  FrameReader(FrameInput& source, bool keep_all, double pace_fps);
  ~FrameReader();
  FrameReader(const FrameReader&) = delete;
  FrameReader& operator=(const FrameReader&) = delete;

  // The next frame (the newest under the latest-frame policy); false when the source has ended or
  // stop_requested() became true while waiting.
  bool take(int& frame_number, cv::Mat& frame, const std::function<bool()>& stop_requested);
  int dropped() const;

 private:
  void read();

  FrameInput& source_;
  const bool keep_all_;
  const double pace_fps_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::pair<int, cv::Mat>> buffer_;
  int dropped_ = 0;
  bool stopping_ = false;
  bool ended_ = false;
  std::exception_ptr error_;
  std::thread thread_;  // last: started after every member above is ready
};

}  // namespace esam3

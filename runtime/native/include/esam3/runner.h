// Run a session over a whole video: predictions JSON, overlay video, latency and memory numbers; mirrors
// runtime/run.py. Every frame is processed (memory needs every memory_stride-th frame); output_stride only
// chooses which frames are recorded in the JSON (4 = the 6 fps annotated frames of a 24 fps SA-V video).
//
// The outputs are one set, as in runtime/run_outputs.py: before any work the temps of killed runs are removed
// from the output folders and every output must be writable; an OutputLock is held on each output for the
// whole run (the same .<name>.lock files as Python's, so the two runners exclude each other); everything is
// written under temp names and renamed into place together at the end, after the overlay video was read
// back whole. An error or a stop request before then leaves none of them (earlier files stay as they were).
//
// Live sources (a camera, a stream URL, raw frames on stdin: live_source.h) have no end known in advance: a stop
// request during the frame loop ENDS the stream and the frames processed so far are committed like a whole video
// (the summary names the signal); the end of the stream does the same. A stop before the first frame was
// processed writes nothing (Interrupted, as for a file). With realtime the source is read in a background thread
// into a one-slot latest-frame buffer (frame_reader.h): the loop always processes the newest frame, frames
// overwritten before being processed are counted as dropped, and a file or folder is paced at its fps.
#pragma once

#include <csignal>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "esam3/session.h"

namespace esam3 {

// prompt_texts are matched against the prompts stored in the metadata; prompt_ids index them directly.
// Empty paths mean "do not write". max_frames 0 = the whole video; num_threads 0 = ExecuTorch's default.
// stop_signal: when set, a flag a signal handler sets to its signal number; the frame loop then throws
// Interrupted at the next frame, or for a live source ends the stream (nullptr: runs to the end).
// video: a file, a frame folder, a camera index, a stream URL or "-" (stdin, with frame_size); fps > 0: the
// source's rate for the overlay video and realtime pacing (0: what the source reports).
struct RunConfig {
  std::string model;
  std::string video;
  std::optional<cv::Size> frame_size;
  double fps = 0;
  bool realtime = false;
  std::vector<std::string> prompt_texts;
  std::vector<size_t> prompt_ids;
  std::string out_json;
  std::string out_video;
  std::string stats_json;
  int output_stride = 1;
  int max_frames = 0;
  int num_threads = 0;
  bool show_progress = true;
  SessionConfig session;
  const volatile std::sig_atomic_t* stop_signal = nullptr;

  void validate() const;
};

// latency_*: per-frame step time (preprocess, model, post-processing, tracking) in ms; fps = 1000 / mean step
// latency; wall_fps also counts decoding the video and writing outputs. rss_samples: (frames processed,
// resident set in KiB) after the first frame, every 10 frames and after the last frame (before the outputs
// are written); peak_rss_kib: the process's peak (VmHWM), writing the outputs included. num_dropped: frames the
// realtime reader overwrote before they were processed; stop_signal: the signal that ended a live stream (0: none).
struct RunSummary {
  std::string video_id;
  int num_frames = 0;
  int num_recorded = 0;
  int num_objects = 0;
  bool realtime = false;
  int num_dropped = 0;
  int stop_signal = 0;
  double latency_p50_ms = 0;
  double latency_p90_ms = 0;
  double fps = 0;
  double wall_fps = 0;
  std::vector<std::pair<int, int64_t>> rss_samples;
  int64_t peak_rss_kib = 0;

  std::string format() const;
  std::string to_json() const;
};

// numpy.percentile's default (linear interpolation between closest ranks); `values` non-empty.
double percentile(std::vector<double> values, double q);

// Current resident set (VmRSS) and peak (VmHWM) of this process in KiB; 0 where /proc is unavailable.
std::pair<int64_t, int64_t> resident_memory_kib();

RunSummary run_video(const RunConfig& config);

}  // namespace esam3

#include "esam3/runner.h"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <numeric>
#include <optional>
#include <sstream>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "esam3/error.h"
#include "esam3/frame_reader.h"
#include "esam3/live_source.h"
#include "esam3/metadata.h"
#include "esam3/output_files.h"
#include "esam3/predictions.h"
#include "esam3/program.h"
#include "esam3/video_io.h"

namespace esam3 {
namespace fs = std::filesystem;

namespace {

constexpr int kRssSampleEvery = 10;

struct Output {
  std::string path;
  std::string what;
};

std::vector<Output> outputs_of(const RunConfig& config) {
  std::vector<Output> outputs;
  for (const Output& output : {Output{config.out_json, "predictions JSON"}, Output{config.out_video, "overlay video"},
                               Output{config.stats_json, "stats JSON"}}) {
    if (!output.path.empty()) {
      outputs.push_back(output);
    }
  }
  return outputs;
}

std::string folder_of(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? "." : parent.string();
}

// The absolute path with symlinks and ".." resolved as far as it exists (the path itself when that fails).
std::string canonical_name(const std::string& path) {
  std::error_code error;
  const fs::path resolved = fs::weakly_canonical(path, error);
  return error ? path : resolved.string();
}

// Before any work: no path given twice, temps of killed runs removed, every output writable.
void check_outputs(const std::vector<Output>& outputs) {
  for (size_t i = 0; i < outputs.size(); ++i) {
    for (size_t j = i + 1; j < outputs.size(); ++j) {
      if (canonical_name(outputs[i].path) == canonical_name(outputs[j].path)) {
        throw Esam3Error(outputs[i].path + ": the same path is given for the " + outputs[i].what + " and the " +
                         outputs[j].what);
      }
    }
  }
  for (const Output& output : outputs) {
    remove_stale_temps(folder_of(output.path));
    check_writable(output.path, output.what);
  }
}

// One OutputLock per output, in a fixed order (by lock file), held until the returned vector is destroyed.
std::vector<std::unique_ptr<OutputLock>> lock_outputs(const std::vector<Output>& outputs) {
  std::vector<std::string> paths;
  for (const Output& output : outputs) {
    paths.push_back(output.path);
  }
  std::sort(paths.begin(), paths.end(), [](const std::string& a, const std::string& b) {
    return canonical_name(OutputLock::lock_path_for(a)) < canonical_name(OutputLock::lock_path_for(b));
  });
  std::vector<std::unique_ptr<OutputLock>> locks;
  for (const std::string& path : paths) {
    locks.push_back(std::make_unique<OutputLock>(path));
  }
  return locks;
}

}  // namespace

void RunConfig::validate() const {
  if (output_stride <= 0) {
    throw Esam3Error("output_stride must be positive, got " + std::to_string(output_stride));
  }
  if (max_frames < 0) {
    throw Esam3Error("max_frames must be positive, got " + std::to_string(max_frames));
  }
  if (num_threads < 0) {
    throw Esam3Error("threads must be positive, got " + std::to_string(num_threads));
  }
  if (prompt_texts.empty() && prompt_ids.empty()) {
    throw Esam3Error("give at least one prompt (--prompt-id K or --prompt TEXT)");
  }
  if (fps < 0 || fps > kMaxFps) {
    throw Esam3Error("fps must be in [0, 1000] (0: the source's), got " + std::to_string(fps));
  }
  check_frame_size_option(video, frame_size);
}

double percentile(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  const double rank = q / 100.0 * (values.size() - 1);
  const size_t below = static_cast<size_t>(std::floor(rank));
  const size_t above = std::min(below + 1, values.size() - 1);
  return values[below] + (rank - below) * (values[above] - values[below]);
}

std::pair<int64_t, int64_t> resident_memory_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  int64_t rss = 0, peak = 0;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      rss = std::stoll(line.substr(6));
    } else if (line.rfind("VmHWM:", 0) == 0) {
      peak = std::stoll(line.substr(6));
    }
  }
  return {rss, peak};
}

std::string RunSummary::format() const {
  const std::string dropped = realtime ? ", " + std::to_string(num_dropped) + " dropped to keep up" : "";
  std::string stopped;
  if (stop_signal != 0) {
    const std::string name = stop_signal == SIGINT ? "SIGINT" : stop_signal == SIGTERM ? "SIGTERM" : "a signal";
    stopped = "; stopped by signal " + std::to_string(stop_signal) + " (" + name + "), the frames so far were written";
  }
  char text[512];
  std::snprintf(text, sizeof(text),
                "%s: %d frames (%d recorded%s), %d objects, backend executorch-native; latency p50 %.1f ms, "
                "p90 %.1f ms; %.2f fps (wall %.2f fps); peak RSS %.1f MiB%s",
                video_id.c_str(), num_frames, num_recorded, dropped.c_str(), num_objects, latency_p50_ms,
                latency_p90_ms, fps, wall_fps, peak_rss_kib / 1024.0, stopped.c_str());
  return text;
}

std::string RunSummary::to_json() const {
  nlohmann::ordered_json document;
  document["video_id"] = video_id;
  document["backend"] = "executorch-native";
  document["num_frames"] = num_frames;
  document["num_recorded"] = num_recorded;
  document["num_objects"] = num_objects;
  document["latency_p50_ms"] = latency_p50_ms;
  document["latency_p90_ms"] = latency_p90_ms;
  document["fps"] = fps;
  document["wall_fps"] = wall_fps;
  document["rss_samples_kib"] = rss_samples;
  document["peak_rss_kib"] = peak_rss_kib;
  document["realtime"] = realtime;
  document["num_dropped"] = num_dropped;
  document["stop_signal"] = stop_signal == 0 ? nlohmann::ordered_json() : nlohmann::ordered_json(stop_signal);
  return document.dump(2);
}

RunSummary run_video(const RunConfig& config) {
  config.validate();
  const std::vector<Output> outputs = outputs_of(config);
  check_outputs(outputs);  // a missing folder or an unwritable output fails now, not after the whole video
  const std::vector<std::unique_ptr<OutputLock>> locks = lock_outputs(outputs);
  if (!fs::is_regular_file(config.model)) {
    throw Esam3Error(config.model + ": model not found (expected a .pte written by python -m export.executorch)");
  }
  // a bad video, an unopenable camera or stream fails before the model loads
  const std::unique_ptr<FrameInput> source = open_frame_input(config.video, config.frame_size, config.fps,
                                                              config.stop_signal);
  const VideoInfo& info = source->info();
  std::unique_ptr<OverlayVideoWriter> writer;
  if (!config.out_video.empty()) {
    writer = std::make_unique<OverlayVideoWriter>(config.out_video, info.fps, cv::Size(info.width, info.height));
  }
  const ExportMetadata metadata = read_export_metadata(metadata_path_for(config.model));
  Program program(config.model, metadata.info, config.num_threads);
  VideoSession session(program, metadata, config.session);
  for (size_t id : config.prompt_ids) {
    session.add_prompt(id);
  }
  for (const std::string& text : config.prompt_texts) {
    session.add_prompt(text);
  }

  MaskletRecorder recorder(info.video_id, cv::Size(info.width, info.height));
  const int known = info.live ? 0 : info.num_frames;  // 0: not known in advance
  const int total =
      config.max_frames > 0 ? (known > 0 ? std::min(known, config.max_frames) : config.max_frames) : known;
  const bool progress = config.show_progress && isatty(fileno(stderr));
  const std::function<bool()> stop_requested = [&]() {
    return config.stop_signal != nullptr && *config.stop_signal != 0;
  };
  const auto stop_if_requested = [&]() {
    if (stop_requested()) {
      if (progress) {
        std::fprintf(stderr, "\n");
      }
      throw Interrupted(config.video + ": interrupted (signal " + std::to_string(*config.stop_signal) +
                        "); nothing was written");
    }
  };

  RunSummary summary;
  summary.video_id = info.video_id;
  std::vector<double> latencies;
  const auto start = std::chrono::steady_clock::now();
  int number = 0, previous = -1;
  bool warned = false;
  cv::Mat frame;
  std::unique_ptr<FrameReader> reader;  // live sources and --realtime: read in a background thread
  if (info.live || config.realtime) {
    reader = std::make_unique<FrameReader>(*source, !config.realtime, config.realtime && !info.live ? info.fps : 0.0);
  }
  const auto next_frame = [&]() {
    if (!reader) {
      return source->next(number, frame);
    }
    return !stop_requested() && reader->take(number, frame, stop_requested);
  };
  while (next_frame()) {
    if (info.live && stop_requested()) {
      break;  // ends the stream; the frames so far are committed below
    }
    stop_if_requested();
    if (previous >= 0 && number != previous + 1 && !warned && !config.realtime) {
      warned = true;
      std::fprintf(stderr, "warning: %s: frame numbers jump from %d to %d; memory is written every %d processed frames\n",
                   info.path.c_str(), previous, number, session.memory_stride());
    }
    previous = number;
    const FrameResult result = session.step(frame);
    latencies.push_back(result.latency_ms);
    if (number % config.output_stride == 0) {
      recorder.add(number, result.objects);
    }
    if (writer) {
      writer->write(draw_overlay(frame, result.objects));
    }
    const int done = static_cast<int>(latencies.size());
    if (done == 1 || done % kRssSampleEvery == 0) {
      summary.rss_samples.emplace_back(done, resident_memory_kib().first);
    }
    if (progress) {
      if (total > 0) {
        std::fprintf(stderr, "\r%s: frame %d/%d", info.video_id.c_str(), done, total);
      } else {  // a live source: no end known in advance
        std::fprintf(stderr, "\r%s: frame %d", info.video_id.c_str(), done);
      }
    }
    if (config.max_frames > 0 && done >= config.max_frames) {
      break;
    }
  }
  summary.num_dropped = reader ? reader->dropped() : 0;
  reader.reset();  // stops and joins the reader thread
  if (progress) {
    std::fprintf(stderr, "\n");
  }
  if (info.live) {
    summary.stop_signal = stop_requested() ? static_cast<int>(*config.stop_signal) : 0;
    if (latencies.empty()) {
      stop_if_requested();  // stopped before the first frame: nothing written
    }
  }
  if (latencies.empty()) {
    throw Esam3Error(config.video + ": no frame was processed");
  }
  summary.realtime = config.realtime;
  summary.rss_samples.emplace_back(static_cast<int>(latencies.size()), resident_memory_kib().first);
  if (!info.live) {  // a live run that was stopped commits what it has; a later signal is dropped
    stop_if_requested();
  }

  // Stage every output, checking each, before any is moved into place.
  if (writer) {
    writer->finish();
  }
  std::optional<StagedFile> json, stats;
  if (!config.out_json.empty()) {
    json.emplace(config.out_json);
    json->write(recorder.to_json(), "predictions JSON");
  }
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  summary.peak_rss_kib = resident_memory_kib().second;
  summary.num_frames = static_cast<int>(latencies.size());
  summary.num_recorded = static_cast<int>(recorder.num_frames());
  summary.num_objects = static_cast<int>(recorder.num_objects());
  summary.latency_p50_ms = percentile(latencies, 50);
  summary.latency_p90_ms = percentile(latencies, 90);
  summary.fps = 1000.0 / (std::accumulate(latencies.begin(), latencies.end(), 0.0) / latencies.size());
  summary.wall_fps = latencies.size() / wall;
  if (!config.stats_json.empty()) {
    stats.emplace(config.stats_json);
    stats->write(summary.to_json(), "stats JSON");
  }
  if (!info.live) {
    stop_if_requested();
  }
  // Commit: renames only; the stop flag is not read from here on, so a signal cannot split the set.
  if (writer) {
    writer->commit();
  }
  if (json) {
    json->commit();
  }
  if (stats) {
    stats->commit();
  }
  return summary;
}

}  // namespace esam3

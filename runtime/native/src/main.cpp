// esam3_run: the command-line runner over an exported ExecuTorch program. Parses flags, builds a RunConfig
// and makes one library call (esam3::run_video). Bad input ends in one "error: ..." line and exit code 2.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <map>
#include <string>

#include "esam3/error.h"
#include "esam3/runner.h"

namespace {

const char* kUsage =
    "usage: esam3_run --model MODEL.pte --video VIDEO (--prompt-id K | --prompt TEXT)... [options]\n"
    "\n"
    "Streaming concept segmentation of a video with an EfficientSAM3 ExecuTorch program (and its\n"
    "metadata MODEL.pte.json). Prints per-frame latency p50/p90 and fps.\n"
    "\n"
    "  --model PATH            .pte written by python -m export.executorch\n"
    "  --video PATH            video file, or a directory of JPEG frames\n"
    "  --prompt-id K           index of a prompt stored with the model (repeatable)\n"
    "  --prompt TEXT           a prompt stored with the model, by its text (repeatable)\n"
    "  --out-json PATH         SA-V-style masklet predictions JSON (python -m runtime's format)\n"
    "  --out-video PATH        overlay video (mp4v)\n"
    "  --stats-json PATH       latency, fps and resident-memory samples as JSON\n"
    "  --output-stride N       record frames whose number is a multiple of N (default 1)\n"
    "  --memory-stride N       write every N-th frame into memory (default: the model's)\n"
    "  --score-threshold X     keep queries with score probability > X (default 0.5)\n"
    "  --min-iou X             mask IoU needed to keep an object id (default 0.3)\n"
    "  --max-missed-frames N   retire an object id after N misses (default 8)\n"
    "  --max-frames N          stop after N frames\n"
    "  --threads N             ExecuTorch thread-pool size (default: one per core)\n"
    "  --quiet                 no progress line\n";

int usage_error(const std::string& message) {
  std::fprintf(stderr, "%s\nerror: %s\n", kUsage, message.c_str());
  return 2;
}

int to_int(const std::string& flag, const std::string& text) {
  size_t used = 0;
  int value = 0;
  try {
    value = std::stoi(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || text.empty()) {
    throw esam3::Esam3Error(flag + " expects an integer, got '" + text + "'");
  }
  return value;
}

double to_double(const std::string& flag, const std::string& text) {
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || text.empty()) {
    throw esam3::Esam3Error(flag + " expects a number, got '" + text + "'");
  }
  return value;
}

}  // namespace

int main(int argc, char** argv) {
  esam3::RunConfig config;
  const std::map<std::string, std::function<void(const std::string&)>> options = {
      {"--model", [&](const std::string& v) { config.model = v; }},
      {"--video", [&](const std::string& v) { config.video = v; }},
      {"--prompt", [&](const std::string& v) { config.prompt_texts.push_back(v); }},
      {"--prompt-id",
       [&](const std::string& v) {
         const int id = to_int("--prompt-id", v);
         if (id < 0) {
           throw esam3::Esam3Error("--prompt-id must be >= 0, got " + v);
         }
         config.prompt_ids.push_back(static_cast<size_t>(id));
       }},
      {"--out-json", [&](const std::string& v) { config.out_json = v; }},
      {"--out-video", [&](const std::string& v) { config.out_video = v; }},
      {"--stats-json", [&](const std::string& v) { config.stats_json = v; }},
      {"--output-stride", [&](const std::string& v) { config.output_stride = to_int("--output-stride", v); }},
      {"--memory-stride",
       [&](const std::string& v) {
         config.session.memory_stride = to_int("--memory-stride", v);
         if (config.session.memory_stride <= 0) {
           throw esam3::Esam3Error("--memory-stride must be positive, got " + v);
         }
       }},
      {"--score-threshold", [&](const std::string& v) { config.session.postprocess.score_threshold = to_double("--score-threshold", v); }},
      {"--min-iou", [&](const std::string& v) { config.session.tracker.min_iou = to_double("--min-iou", v); }},
      {"--max-missed-frames", [&](const std::string& v) { config.session.tracker.max_missed_frames = to_int("--max-missed-frames", v); }},
      {"--max-frames",
       [&](const std::string& v) {
         config.max_frames = to_int("--max-frames", v);
         if (config.max_frames <= 0) {
           throw esam3::Esam3Error("--max-frames must be positive, got " + v);
         }
       }},
      {"--threads",
       [&](const std::string& v) {
         config.num_threads = to_int("--threads", v);
         if (config.num_threads <= 0) {
           throw esam3::Esam3Error("--threads must be positive, got " + v);
         }
       }},
  };
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string flag = argv[i];
      if (flag == "-h" || flag == "--help") {
        std::fputs(kUsage, stdout);
        return 0;
      }
      if (flag == "--quiet") {
        config.show_progress = false;
        continue;
      }
      auto option = options.find(flag);
      if (option == options.end()) {
        return usage_error("unknown argument '" + flag + "'");
      }
      if (i + 1 >= argc) {
        return usage_error(flag + " expects a value");
      }
      option->second(argv[++i]);
    }
    if (config.model.empty() || config.video.empty()) {
      return usage_error("--model and --video are required");
    }
    const esam3::RunSummary summary = esam3::run_video(config);
    std::printf("%s\n", summary.format().c_str());
    return 0;
  } catch (const esam3::Esam3Error& err) {
    std::fprintf(stderr, "error: %s\n", err.what());
    return 2;
  } catch (const std::exception& err) {  // OpenCV, filesystem or allocation failures
    std::fprintf(stderr, "error: %s\n", err.what());
    return 2;
  }
}

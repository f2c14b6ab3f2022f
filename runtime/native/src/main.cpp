// esam3_run: the command-line runner over an exported ExecuTorch program. Parses flags, builds a RunConfig
// and makes one library call (esam3::run_video). Bad input ends in one "error: <file or flag>: <problem>" line
// and exit code 2 (numeric flags are checked as python -m runtime checks them, with the same messages);
// SIGINT / SIGTERM stop the run at the next frame with nothing written, exit code 130; for a live source
// (camera, stream, stdin) they end the stream instead and the frames so far are written, exit code 0.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <limits>
#include <map>
#include <string>

#include <signal.h>

#include "esam3/error.h"
#include "esam3/live_source.h"
#include "esam3/runner.h"

namespace {

const char* kUsage =
    "usage: esam3_run --model MODEL.pte --video VIDEO (--prompt-id K | --prompt TEXT)... [options]\n"
    "\n"
    "Streaming concept segmentation of a video with an EfficientSAM3 ExecuTorch program (and its\n"
    "metadata MODEL.pte.json). Prints per-frame latency p50/p90 and fps.\n"
    "\n"
    "  --model PATH            .pte written by python -m export.executorch\n"
    "  --video SOURCE          video file, directory of JPEG frames, camera index (0), stream URL\n"
    "                          (rtsp://, http://, udp://, ...) or - (raw bgr24 frames on stdin, with --size)\n"
    "  --size WxH              frame size of --video - (exactly W*H*3 bytes per frame); only for stdin\n"
    "  --fps X                 rate of the source for the overlay video and --realtime pacing, at most\n"
    "                          1000 (default: what the source reports; 24 for stdin)\n"
    "  --realtime              keep up with the source: always process the newest frame and drop the ones\n"
    "                          that came in meanwhile (a file or folder is paced at its fps)\n"
    "  --prompt-id K           index of a prompt stored with the model (repeatable)\n"
    "  --prompt TEXT           a prompt stored with the model, by its text (repeatable)\n"
    "  --out-json PATH         SA-V-style masklet predictions JSON (python -m runtime's format)\n"
    "  --out-video PATH        overlay video (mp4v)\n"
    "  --stats-json PATH       latency, fps and resident-memory samples as JSON\n"
    "  --output-stride N       record frames whose number is a multiple of N (default 1)\n"
    "  --memory-stride N       write every N-th frame into memory (default: the model's)\n"
    "  --score-threshold X     keep queries with score probability > X, in [0, 1) (default 0.5)\n"
    "  --min-iou X             mask IoU needed to keep an object id, in (0, 1] (default 0.3)\n"
    "  --max-missed-frames N   retire an object id after N misses (default 8)\n"
    "  --max-frames N          stop after N frames\n"
    "  --threads N             ExecuTorch thread-pool size (default: one per core)\n"
    "  --quiet                 no progress line\n"
    "\n"
    "outputs: --out-json, --out-video and --stats-json are one set. Before any work every output folder\n"
    "must exist and be writable, and temp files that killed runs left there are removed. Another run\n"
    "writing any of the same outputs (esam3_run or python -m runtime) makes this run refuse at once\n"
    "(exit 2). Everything is written under temp names and moved into place together when the video is\n"
    "done; the overlay video is read back first and must hold every frame (a full disk is an error,\n"
    "exit 2). An error, SIGINT or SIGTERM before that writes nothing: files already at the output paths\n"
    "stay as they were; an interrupted run exits 130.\n"
    "\n"
    "live input: a camera, a stream or stdin has no end known in advance. SIGINT or SIGTERM (after the\n"
    "first frame) or the end of the stream ENDS it: the frames processed so far are written as above,\n"
    "exit 0, and the summary names the signal. A partial last frame on stdin is a warning and is dropped.\n"
    "A camera or stream that cannot be opened is one error line, exit 2, nothing written. E.g.\n"
    "  ffmpeg -i in.mp4 -f rawvideo -pix_fmt bgr24 - | esam3_run --model M.pte --video - --size 640x480 \\\n"
    "      --prompt-id 0 --realtime --out-json p.json\n";

volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void request_stop(int signal_number) { g_stop_signal = signal_number; }

// SIGINT and SIGTERM set g_stop_signal; the frame loop reads it (RunConfig::stop_signal).
void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = request_stop;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

esam3::Esam3Error flag_error(const std::string& flag, const std::string& problem) {
  return esam3::Esam3Error(flag + ": " + problem);
}

// Python's efficient_sam3.cli number types, with their messages.
long long parse_integer(const std::string& flag, const std::string& text) {
  size_t used = 0;
  long long value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::out_of_range&) {
    throw flag_error(flag, "'" + text + "' is out of range");
  } catch (const std::exception&) {
    used = 0;
  }
  if (text.empty() || used != text.size()) {
    throw flag_error(flag, "'" + text + "' is not an integer");
  }
  if (value > std::numeric_limits<int>::max() || value < std::numeric_limits<int>::min()) {
    throw flag_error(flag, "'" + text + "' is out of range");
  }
  return value;
}

int positive_int(const std::string& flag, const std::string& text) {
  const long long value = parse_integer(flag, text);
  if (value <= 0) {
    throw flag_error(flag, text + " must be a positive integer");
  }
  return static_cast<int>(value);
}

int non_negative_int(const std::string& flag, const std::string& text) {
  const long long value = parse_integer(flag, text);
  if (value < 0) {
    throw flag_error(flag, text + " must be an integer >= 0");
  }
  return static_cast<int>(value);
}

// The whole of ``text`` as a number (not NaN), else the flag's "is not a number" error.
double parse_number(const std::string& flag, const std::string& text) {
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (text.empty() || used != text.size() || value != value) {
    throw flag_error(flag, "'" + text + "' is not a number");
  }
  return value;
}

double probability(const std::string& flag, const std::string& text) {
  const double value = parse_number(flag, text);
  if (value < 0.0 || value > 1.0) {
    throw flag_error(flag, text + " must be between 0 and 1");
  }
  return value;
}

double score_threshold(const std::string& text) {
  const double value = probability("--score-threshold", text);
  if (value == 1.0) {
    throw flag_error("--score-threshold", text + " must be below 1 (no score is above 1)");
  }
  return value;
}

double mask_iou(const std::string& text) {
  const double value = probability("--min-iou", text);
  if (value == 0.0) {
    throw flag_error("--min-iou", text + " must be above 0 (an IoU of 0 would match unrelated masks)");
  }
  return value;
}

// python -m runtime's positive_float.
double positive_float(const std::string& flag, const std::string& text) {
  const double value = parse_number(flag, text);
  if (!(value > 0.0) || value == std::numeric_limits<double>::infinity()) {
    throw flag_error(flag, text + " must be a positive number");
  }
  return value;
}

double source_fps(const std::string& text) {
  const double value = positive_float("--fps", text);
  if (value > esam3::kMaxFps) {
    char limit[32];
    std::snprintf(limit, sizeof(limit), "%g", esam3::kMaxFps);
    throw flag_error("--fps", text + " must be at most " + limit + " frames per second");
  }
  return value;
}

// "WIDTHxHEIGHT", both positive (runtime/live_sources.py parse_frame_size, same messages).
cv::Size frame_size(const std::string& text) {
  const size_t x = text.find_first_of("xX");
  const auto digits = [](const std::string& part) {
    return !part.empty() && part.find_first_not_of("0123456789") == std::string::npos;
  };
  if (x == std::string::npos || !digits(text.substr(0, x)) || !digits(text.substr(x + 1))) {
    throw flag_error("--size", "'" + text + "' is not WIDTHxHEIGHT (e.g. 640x480)");
  }
  long long width = 0, height = 0;
  try {
    width = std::stoll(text.substr(0, x));
    height = std::stoll(text.substr(x + 1));
  } catch (const std::exception&) {
    throw flag_error("--size", "'" + text + "' is out of range");
  }
  if (width <= 0 || height <= 0) {
    throw flag_error("--size", text + " must be two positive integers WIDTHxHEIGHT");
  }
  if (width > 1 << 15 || height > 1 << 15) {
    throw flag_error("--size", "'" + text + "' is out of range");
  }
  return cv::Size(static_cast<int>(width), static_cast<int>(height));
}

int fail(const std::string& problem) {
  std::fprintf(stderr, "error: %s\n", problem.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  esam3::RunConfig config;
  const std::map<std::string, std::function<void(const std::string&)>> options = {
      {"--model", [&](const std::string& v) { config.model = v; }},
      {"--video", [&](const std::string& v) { config.video = v; }},
      {"--size", [&](const std::string& v) { config.frame_size = frame_size(v); }},
      {"--fps", [&](const std::string& v) { config.fps = source_fps(v); }},
      {"--prompt", [&](const std::string& v) { config.prompt_texts.push_back(v); }},
      {"--prompt-id", [&](const std::string& v) { config.prompt_ids.push_back(non_negative_int("--prompt-id", v)); }},
      {"--out-json", [&](const std::string& v) { config.out_json = v; }},
      {"--out-video", [&](const std::string& v) { config.out_video = v; }},
      {"--stats-json", [&](const std::string& v) { config.stats_json = v; }},
      {"--output-stride", [&](const std::string& v) { config.output_stride = positive_int("--output-stride", v); }},
      {"--memory-stride", [&](const std::string& v) { config.session.memory_stride = positive_int("--memory-stride", v); }},
      {"--score-threshold", [&](const std::string& v) { config.session.postprocess.score_threshold = score_threshold(v); }},
      {"--min-iou", [&](const std::string& v) { config.session.tracker.min_iou = mask_iou(v); }},
      {"--max-missed-frames",
       [&](const std::string& v) { config.session.tracker.max_missed_frames = non_negative_int("--max-missed-frames", v); }},
      {"--max-frames", [&](const std::string& v) { config.max_frames = positive_int("--max-frames", v); }},
      {"--threads", [&](const std::string& v) { config.num_threads = positive_int("--threads", v); }},
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
      if (flag == "--realtime") {
        config.realtime = true;
        continue;
      }
      auto option = options.find(flag);
      if (option == options.end()) {
        return fail(flag + ": unknown argument (esam3_run --help lists the flags)");
      }
      if (i + 1 >= argc) {
        return fail(flag + ": expects a value");
      }
      option->second(argv[++i]);
    }
    if (config.model.empty() || config.video.empty()) {
      return fail("--model and --video are required (esam3_run --help)");
    }
    install_stop_handlers();
    config.stop_signal = &g_stop_signal;
    const esam3::RunSummary summary = esam3::run_video(config);
    std::printf("%s\n", summary.format().c_str());
    return 0;
  } catch (const esam3::Interrupted& interrupted) {
    std::fprintf(stderr, "error: %s\n", interrupted.what());
    return 130;
  } catch (const std::exception& err) {  // Esam3Error, OpenCV, filesystem or allocation failures
    return fail(err.what());
  }
}

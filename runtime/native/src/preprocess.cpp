#include "esam3/preprocess.h"

#include <array>

#include <opencv2/imgproc.hpp>

#include "esam3/error.h"

namespace esam3 {

void preprocess_frame(const cv::Mat& frame_bgr, int image_size, const std::array<float, 3>& pixel_mean,
                      const std::array<float, 3>& pixel_std, std::vector<float>& out) {
  if (frame_bgr.type() != CV_8UC3 || frame_bgr.empty()) {
    throw Esam3Error("preprocess_frame expects a non-empty 8-bit 3-channel frame");
  }
  if (image_size <= 0) {
    throw Esam3Error("image_size must be positive, got " + std::to_string(image_size));
  }
  cv::Mat rgb, resized;
  cv::cvtColor(frame_bgr, rgb, cv::COLOR_BGR2RGB);
  cv::resize(rgb, resized, cv::Size(image_size, image_size), 0, 0, cv::INTER_LINEAR);  // [S, S, 3] uint8
  const size_t plane = static_cast<size_t>(image_size) * image_size;
  out.resize(3 * plane);
  for (int y = 0; y < image_size; ++y) {
    const uint8_t* row = resized.ptr<uint8_t>(y);
    for (int x = 0; x < image_size; ++x) {
      for (int c = 0; c < 3; ++c) {  // [S, S, 3] -> [3, S, S]
        const float value = static_cast<float>(row[3 * x + c]) / 255.0f;  // float32 steps, as numpy does
        out[c * plane + static_cast<size_t>(y) * image_size + x] = (value - pixel_mean[c]) / pixel_std[c];
      }
    }
  }
}

}  // namespace esam3

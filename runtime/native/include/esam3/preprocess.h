// SAM3 image preprocessing, the same steps as runtime/preprocess.py: BGR uint8 [H, W, 3] -> RGB ->
// cv::resize to (S, S) with INTER_LINEAR -> float32 / 255 -> (x - 0.5) / 0.5 -> CHW [3, S, S].
#pragma once

#include <vector>

#include <opencv2/core.hpp>

namespace esam3 {

constexpr float kPixelMean = 0.5f;
constexpr float kPixelStd = 0.5f;

// frame: CV_8UC3 BGR (as OpenCV decodes video). out: resized to 3 * S * S, CHW float32 in [-1, 1].
void preprocess_frame(const cv::Mat& frame_bgr, int image_size, std::vector<float>& out);

}  // namespace esam3

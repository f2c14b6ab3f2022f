// SAM3 image preprocessing, the same steps as efficient_sam3/contract.py preprocess_frame: BGR uint8
// [H, W, 3] -> RGB -> cv::resize to (S, S) with INTER_LINEAR -> float32 / 255 -> (x - mean) / std per
// channel -> CHW [3, S, S]. S, mean and std come from the export metadata (ModelInfo).
#pragma once

#include <array>
#include <vector>

#include <opencv2/core.hpp>

namespace esam3 {

// frame: CV_8UC3 BGR (as OpenCV decodes video). out: resized to 3 * S * S, CHW float32.
void preprocess_frame(const cv::Mat& frame_bgr, int image_size, const std::array<float, 3>& pixel_mean,
                      const std::array<float, 3>& pixel_std, std::vector<float>& out);

}  // namespace esam3

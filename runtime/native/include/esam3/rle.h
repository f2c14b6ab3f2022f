// COCO run-length encoding of binary masks, byte-identical to pycocotools' mask.encode:
// column-major (Fortran order) run lengths starting with a run of zeros, written as the
// compressed counts string (5-bit groups, 0x20 = more, the delta trick for runs after the second).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

namespace esam3 {

// Column-major run lengths of a CV_8U mask (non-zero = foreground); the first run counts zeros
// (and may be 0). The runs sum to rows * cols.
std::vector<uint32_t> mask_runs(const cv::Mat& mask);

// pycocotools' rleToString: run lengths -> compressed counts string.
std::string runs_to_string(const std::vector<uint32_t>& runs);

// Both steps: CV_8U mask [H, W] -> the "counts" string of {"size": [H, W], "counts": ...}.
std::string encode_rle(const cv::Mat& mask);

}  // namespace esam3

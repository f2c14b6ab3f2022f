#include "esam3/rle.h"

#include "esam3/error.h"

namespace esam3 {

std::vector<uint32_t> mask_runs(const cv::Mat& mask) {
  if (mask.type() != CV_8UC1) {
    throw Esam3Error("mask_runs expects a single-channel uint8 mask");
  }
  cv::Mat columns;  // [W, H]: row x of `columns` is column x of `mask`
  cv::transpose(mask, columns);
  std::vector<uint32_t> runs;
  uint8_t previous = 0;
  uint32_t length = 0;
  for (int x = 0; x < columns.rows; ++x) {
    const uint8_t* column = columns.ptr<uint8_t>(x);
    for (int y = 0; y < columns.cols; ++y) {
      const uint8_t value = column[y] != 0;
      if (value != previous) {
        runs.push_back(length);
        length = 0;
        previous = value;
      }
      ++length;
    }
  }
  runs.push_back(length);
  return runs;
}

std::string runs_to_string(const std::vector<uint32_t>& runs) {
  std::string counts;
  for (size_t i = 0; i < runs.size(); ++i) {
    int64_t value = runs[i];
    if (i > 2) {
      value -= static_cast<int64_t>(runs[i - 2]);  // from the third run on, store the change
    }
    bool more = true;
    while (more) {
      int64_t chunk = value & 0x1f;
      value >>= 5;  // arithmetic shift: negative deltas end at -1
      more = (chunk & 0x10) ? value != -1 : value != 0;
      if (more) {
        chunk |= 0x20;
      }
      counts.push_back(static_cast<char>(chunk + 48));
    }
  }
  return counts;
}

std::string encode_rle(const cv::Mat& mask) { return runs_to_string(mask_runs(mask)); }

}  // namespace esam3

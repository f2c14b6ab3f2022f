#include "esam3/postprocess.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <opencv2/imgproc.hpp>

#include "esam3/error.h"

namespace esam3 {
namespace {

double sigmoid(double logit) { return 1.0 / (1.0 + std::exp(-logit)); }

}  // namespace

void PostprocessConfig::validate() const {
  if (!(score_threshold >= 0.0 && score_threshold < 1.0)) {
    throw Esam3Error("score_threshold must be in [0, 1), got " + std::to_string(score_threshold));
  }
  if (!(nms_iou_threshold > 0.0 && nms_iou_threshold <= 1.0)) {
    throw Esam3Error("nms_iou_threshold must be in (0, 1], got " + std::to_string(nms_iou_threshold));
  }
}

double mask_iou(const cv::Mat& a, const cv::Mat& b) {
  cv::Mat both;
  cv::bitwise_and(a, b, both);
  const double intersection = cv::countNonZero(both);
  const double uni = cv::countNonZero(a) + static_cast<double>(cv::countNonZero(b)) - intersection;
  return uni > 0 ? intersection / uni : 0.0;
}

std::array<float, 4> mask_box(const cv::Mat& mask) {
  cv::Mat rows_any, cols_any;
  cv::reduce(mask, rows_any, 1, cv::REDUCE_MAX);  // [H, 1]
  cv::reduce(mask, cols_any, 0, cv::REDUCE_MAX);  // [1, W]
  int y1 = -1, y2 = -1, x1 = -1, x2 = -1;
  for (int y = 0; y < rows_any.rows; ++y) {
    if (rows_any.at<uint8_t>(y, 0)) {
      y1 = y1 < 0 ? y : y1;
      y2 = y;
    }
  }
  for (int x = 0; x < cols_any.cols; ++x) {
    if (cols_any.at<uint8_t>(0, x)) {
      x1 = x1 < 0 ? x : x1;
      x2 = x;
    }
  }
  if (y1 < 0) {
    throw Esam3Error("mask_box needs a non-empty mask");
  }
  return {static_cast<float>(x1), static_cast<float>(y1), static_cast<float>(x2 + 1), static_cast<float>(y2 + 1)};
}

std::vector<size_t> nms_keep(const std::vector<cv::Mat>& masks, double iou_threshold) {
  std::vector<size_t> kept;
  for (size_t index = 0; index < masks.size(); ++index) {
    bool keep = true;
    for (size_t better : kept) {
      keep = keep && mask_iou(masks[index], masks[better]) <= iou_threshold;
    }
    if (keep) {
      kept.push_back(index);
    }
  }
  return kept;
}

std::vector<Detection> detections_from_output(const DecodeOutput& output, const std::string& prompt,
                                              cv::Size frame_size, const PostprocessConfig& config) {
  const int queries = output.num_queries;
  const double presence_prob = sigmoid(output.presence_logit);
  std::vector<double> probs(queries);
  for (int q = 0; q < queries; ++q) {
    probs[q] = sigmoid(output.pred_logits[q]) * presence_prob;
  }
  std::vector<int> order(queries);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return -probs[a] < -probs[b]; });

  const int side = output.mask_size;
  std::vector<int> candidates;
  std::vector<cv::Mat> coarse;  // [M, M] CV_8U 0 / 1 each
  for (int query : order) {
    if (!(probs[query] > config.score_threshold)) {
      continue;
    }
    const cv::Mat logits(side, side, CV_32F, const_cast<float*>(output.pred_masks) + static_cast<size_t>(query) * side * side);
    cv::Mat mask = (logits > 0) / 255;  // 255 where positive -> 1
    if (cv::countNonZero(mask) > 0) {
      candidates.push_back(query);
      coarse.push_back(mask);
    }
  }
  std::vector<Detection> detections;
  for (size_t index : nms_keep(coarse, config.nms_iou_threshold)) {
    const int query = candidates[index];
    const cv::Mat logits(side, side, CV_32F, const_cast<float*>(output.pred_masks) + static_cast<size_t>(query) * side * side);
    cv::Mat resized;  // [H, W] float32 logits
    cv::resize(logits, resized, frame_size, 0, 0, cv::INTER_LINEAR);
    cv::Mat mask = (resized > 0) / 255;
    if (cv::countNonZero(mask) > 0) {
      detections.push_back(Detection{prompt, mask, coarse[index], mask_box(mask), probs[query], query});
    }
  }
  return detections;
}

}  // namespace esam3

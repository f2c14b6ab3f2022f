// Per-query predictions -> detections at the frame's own size; mirrors runtime/postprocess.py.
//
// score_prob = sigmoid(pred_logit) * sigmoid(presence_logit); queries with score_prob > score_threshold and a
// non-empty coarse mask (mask logits [M, M] > 0) are candidates, best first. Mask NMS runs on the coarse masks:
// a candidate whose IoU with a better kept one exceeds nms_iou_threshold is dropped. Each kept query's logits
// are then resized bilinearly (cv::resize INTER_LINEAR) to the frame size and thresholded at 0 (dropped if that
// leaves nothing). The box is the mask's tight box in pixels, (x1, y1, x2, y2) with x2 / y2 exclusive.
#pragma once

#include <array>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "esam3/program.h"

namespace esam3 {

struct PostprocessConfig {
  double score_threshold = 0.5;
  double nms_iou_threshold = 0.7;

  void validate() const;
};

// One object found in one frame: mask CV_8U [H, W] (1 = object) at frame size; coarse_mask CV_8U [M, M] at
// the model's mask resolution (for NMS and tracking).
struct Detection {
  std::string prompt;
  cv::Mat mask;
  cv::Mat coarse_mask;
  std::array<float, 4> box_xyxy;
  double score_prob;
  int query;
};

// IoU of two equally sized CV_8U 0/1 masks (0 when both are empty).
double mask_iou(const cv::Mat& a, const cv::Mat& b);

// Tight box of a non-empty mask: (x1, y1, x2, y2), x2 / y2 exclusive.
std::array<float, 4> mask_box(const cv::Mat& mask);

// Greedy mask NMS over masks sorted best first -> indices kept (IoU with every kept one <= threshold).
std::vector<size_t> nms_keep(const std::vector<cv::Mat>& masks, double iou_threshold);

// Threshold, mask NMS, upsample the survivors; best score first. frame_size = (width, height).
std::vector<Detection> detections_from_output(const DecodeOutput& output, const std::string& prompt,
                                              cv::Size frame_size, const PostprocessConfig& config);

}  // namespace esam3

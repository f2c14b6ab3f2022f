// The stream's memory: a ring of the last T level-3 features with its valid mask, in the slot convention
// of efficient_sam3 (slot T-1 = most recent frame, empty slots at the low indices, masked 0). Fixed size,
// so memory use does not grow with the video. Mirrors runtime/state.py.
//
// Policy, as in training: frame i is decoded with the memory of the frames written before it; then, when
// i % memory_stride == 0, its own level-3 feature is written (shift left, write at T-1).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace esam3 {

constexpr int64_t kEmptySlot = -1;

struct MemoryRing {
  int context_frames = 0;       // T
  size_t feature_size = 0;      // C * G * G floats per slot
  std::vector<float> features;  // [T, C, G, G], zeros in empty slots
  std::vector<uint8_t> mask;    // [T], 1 = valid
  std::vector<int64_t> frame_indices;  // [T], stream index held by each slot, -1 = empty

  int num_valid() const;
  // Stream indices of the valid slots, oldest first.
  std::vector<int64_t> valid_frames() const;
};

MemoryRing empty_memory(int context_frames, int channels, int grid);

// Write `feature` (feature_size floats) as the most recent slot, evicting the oldest. In place: the ring
// never reallocates. Frames must be written in increasing order.
void push_memory(MemoryRing& ring, const float* feature, int64_t frame_index);

bool is_memory_frame(int64_t frame_index, int memory_stride);

}  // namespace esam3

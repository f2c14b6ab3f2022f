#include "esam3/memory_ring.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "esam3/error.h"

namespace esam3 {

int MemoryRing::num_valid() const { return static_cast<int>(std::count(mask.begin(), mask.end(), 1)); }

std::vector<int64_t> MemoryRing::valid_frames() const {
  std::vector<int64_t> frames;
  for (int slot = 0; slot < context_frames; ++slot) {
    if (mask[slot]) {
      frames.push_back(frame_indices[slot]);
    }
  }
  return frames;
}

MemoryRing empty_memory(int context_frames, int channels, int grid) {
  if (context_frames <= 0) {
    throw Esam3Error("context_frames must be positive, got " + std::to_string(context_frames));
  }
  MemoryRing ring;
  ring.context_frames = context_frames;
  ring.feature_size = static_cast<size_t>(channels) * grid * grid;
  ring.features.assign(context_frames * ring.feature_size, 0.0f);
  ring.mask.assign(context_frames, 0);
  ring.frame_indices.assign(context_frames, kEmptySlot);
  return ring;
}

void push_memory(MemoryRing& ring, const float* feature, int64_t frame_index) {
  const int last = ring.context_frames - 1;
  if (ring.mask[last] && frame_index <= ring.frame_indices[last]) {
    throw Esam3Error("memory frames must be written in order: " + std::to_string(frame_index) + " after " +
                     std::to_string(ring.frame_indices[last]));
  }
  // Shift left: slot t takes slot t + 1.
  std::memmove(ring.features.data(), ring.features.data() + ring.feature_size, last * ring.feature_size * sizeof(float));
  std::memcpy(ring.features.data() + last * ring.feature_size, feature, ring.feature_size * sizeof(float));
  std::rotate(ring.mask.begin(), ring.mask.begin() + 1, ring.mask.end());
  std::rotate(ring.frame_indices.begin(), ring.frame_indices.begin() + 1, ring.frame_indices.end());
  ring.mask[last] = 1;
  ring.frame_indices[last] = frame_index;
}

bool is_memory_frame(int64_t frame_index, int memory_stride) { return frame_index % memory_stride == 0; }

}  // namespace esam3

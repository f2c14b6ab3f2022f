#include "esam3/metadata.h"

#include <array>
#include <fstream>
#include <sstream>
#include <utility>

#include <nlohmann/json.hpp>

#include "esam3/error.h"

namespace esam3 {
namespace {

using nlohmann::json;

int positive_int(const json& data, const char* key, const std::string& path) {
  if (!data.contains(key) || !data[key].is_number_integer() || data[key].get<int64_t>() <= 0) {
    throw Esam3Error(path + ": missing or non-positive integer field '" + key + "'");
  }
  return data[key].get<int>();
}

std::array<float, 3> three_numbers(const json& data, const char* key, const std::string& path) {
  if (!data[key].is_array() || data[key].size() != 3) {
    throw Esam3Error(path + ": field '" + key + "' must hold 3 numbers (R, G, B)");
  }
  std::array<float, 3> values{};
  for (size_t c = 0; c < 3; ++c) {
    if (!data[key][c].is_number()) {
      throw Esam3Error(path + ": field '" + key + "' must hold 3 numbers (R, G, B)");
    }
    values[c] = data[key][c].get<float>();
  }
  return values;
}

// The contract fields of format_version 2, or for a version-1 file the values every v1 export had:
// mean = std = 0.5, FPN levels (4, 2, 1, 0.5) x the 14 px trunk grid (efficient_sam3/contract.py).
void read_contract(const json& data, int version, ModelInfo& info, const std::string& path) {
  if (version == 1) {
    if (info.image_size % 28 != 0) {
      throw Esam3Error(path + ": image_size must be a multiple of 28, got " + std::to_string(info.image_size));
    }
    const int trunk = info.image_size / 14;
    info.pixel_mean = {0.5f, 0.5f, 0.5f};
    info.pixel_std = {0.5f, 0.5f, 0.5f};
    info.fpn_sizes = {4 * trunk, 2 * trunk, trunk, trunk / 2};
    info.mask_side = info.fpn_sizes[0];
    info.memory_side = info.fpn_sizes[3];
    return;
  }
  for (const char* key : {"image_mean", "image_std", "fpn_sizes", "mask_size", "memory_grid", "color_order",
                          "resize", "slot_order"}) {
    if (!data.contains(key)) {
      throw Esam3Error(path + ": format_version 2 metadata lacks '" + key + "'; re-export the model");
    }
  }
  info.pixel_mean = three_numbers(data, "image_mean", path);
  info.pixel_std = three_numbers(data, "image_std", path);
  for (float value : info.pixel_std) {
    if (!(value > 0.0f)) {
      throw Esam3Error(path + ": field 'image_std' must be positive");
    }
  }
  const json& sizes = data["fpn_sizes"];
  if (!sizes.is_array() || sizes.size() != 4) {
    throw Esam3Error(path + ": field 'fpn_sizes' must list the 4 FPN level sides");
  }
  for (const json& side : sizes) {
    if (!side.is_number_integer() || side.get<int64_t>() <= 0) {
      throw Esam3Error(path + ": field 'fpn_sizes' must hold positive integers");
    }
    info.fpn_sizes.push_back(side.get<int>());
  }
  info.mask_side = positive_int(data, "mask_size", path);
  info.memory_side = positive_int(data, "memory_grid", path);
  if (info.mask_side != info.fpn_sizes[0] || info.memory_side != info.fpn_sizes[3]) {
    throw Esam3Error(path + ": mask_size / memory_grid disagree with fpn_sizes levels 0 / 3");
  }
  const std::pair<const char*, const char*> fixed[] = {
      {"color_order", "RGB"}, {"resize", "bilinear_square"}, {"slot_order", "oldest_first"}};
  for (const auto& [key, value] : fixed) {
    if (data[key] != value) {
      throw Esam3Error(path + ": field '" + key + "' is " + data[key].dump() + ", this runner supports '" + value + "'");
    }
  }
}

StoredPrompt read_prompt(const json& entry, size_t index, const ModelInfo& info, const std::string& path) {
  const std::string where = path + ": prompts[" + std::to_string(index) + "]";
  if (!entry.is_object() || !entry.contains("text") || !entry["text"].is_string()) {
    throw Esam3Error(where + ": expected an object with a 'text' string");
  }
  StoredPrompt prompt;
  prompt.text = entry["text"].get<std::string>();
  const size_t length = static_cast<size_t>(info.max_text_length);
  const size_t width = static_cast<size_t>(info.hidden_size);
  const json& features = entry.contains("text_features") ? entry["text_features"] : json();
  const json& mask = entry.contains("attention_mask") ? entry["attention_mask"] : json();
  if (!features.is_array() || features.size() != length || !mask.is_array() || mask.size() != length) {
    throw Esam3Error(where + ": text_features must be [" + std::to_string(length) + ", " + std::to_string(width) +
                     "] and attention_mask [" + std::to_string(length) + "]");
  }
  prompt.text_features.reserve(length * width);
  for (const json& row : features) {
    if (!row.is_array() || row.size() != width) {
      throw Esam3Error(where + ": every text_features row must hold " + std::to_string(width) + " numbers");
    }
    for (const json& value : row) {
      if (!value.is_number()) {
        throw Esam3Error(where + ": text_features holds a non-number");
      }
      prompt.text_features.push_back(value.get<float>());
    }
  }
  for (const json& value : mask) {
    if (!value.is_number_integer()) {
      throw Esam3Error(where + ": attention_mask holds a non-integer");
    }
    prompt.attention_mask.push_back(value.get<int64_t>());
  }
  return prompt;
}

}  // namespace

std::string metadata_path_for(const std::string& program_path) { return program_path + ".json"; }

ExportMetadata read_export_metadata(const std::string& path, const std::string& expected_backend) {
  std::ifstream stream(path);
  if (!stream) {
    throw Esam3Error(path + ": export metadata not found (export/ writes it beside the model)");
  }
  json data;
  try {
    data = json::parse(stream);
  } catch (const json::exception& err) {
    throw Esam3Error(path + ": unreadable metadata JSON (" + err.what() + ")");
  }
  if (!data.is_object()) {
    throw Esam3Error(path + ": metadata must be a JSON object");
  }
  if (!data.contains("format_version") || !data["format_version"].is_number_integer() ||
      data["format_version"].get<int64_t>() < 1 || data["format_version"].get<int64_t>() > kMetadataFormatVersion) {
    throw Esam3Error(path + ": format_version " + (data.contains("format_version") ? data["format_version"].dump() : "missing") +
                     " is not supported, this runner reads 1-" + std::to_string(kMetadataFormatVersion) +
                     "; re-export the model");
  }
  const int version = data["format_version"].get<int>();
  if (!data.contains("backend") || data["backend"] != expected_backend) {
    throw Esam3Error(path + ": metadata is for backend " + (data.contains("backend") ? data["backend"].dump() : "(missing)") +
                     ", not '" + expected_backend + "'");
  }
  ExportMetadata metadata;
  metadata.path = path;
  ModelInfo& info = metadata.info;
  info.preset = data.contains("preset") && data["preset"].is_string() ? data["preset"].get<std::string>() : "unknown";
  info.image_size = positive_int(data, "image_size", path);
  info.context_frames = positive_int(data, "context_frames", path);
  info.memory_stride = positive_int(data, "memory_stride", path);
  info.num_queries = positive_int(data, "num_queries", path);
  info.max_text_length = positive_int(data, "max_text_length", path);
  info.hidden_size = positive_int(data, "hidden_size", path);
  read_contract(data, version, info, path);
  if (version >= 3) {
    info.max_prompts = positive_int(data, "max_prompts", path);
  }
  metadata.quantization =
      data.contains("quantization") && data["quantization"].is_string() ? data["quantization"].get<std::string>() : "none";
  if (data.contains("prompts")) {
    if (!data["prompts"].is_array()) {
      throw Esam3Error(path + ": 'prompts' must be a list");
    }
    for (size_t i = 0; i < data["prompts"].size(); ++i) {
      metadata.prompts.push_back(read_prompt(data["prompts"][i], i, info, path));
    }
  }
  return metadata;
}

}  // namespace esam3

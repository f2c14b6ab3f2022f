#include "esam3/metadata.h"

#include <fstream>
#include <sstream>

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
  if (!data.contains("format_version") || data["format_version"] != kMetadataFormatVersion) {
    throw Esam3Error(path + ": format_version " + (data.contains("format_version") ? data["format_version"].dump() : "missing") +
                     ", this runner reads " + std::to_string(kMetadataFormatVersion));
  }
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

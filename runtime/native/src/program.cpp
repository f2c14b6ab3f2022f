#include "esam3/program.h"

#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <unordered_set>
#include <vector>

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <executorch/runtime/platform/platform.h>

#include "esam3/error.h"

// The thread pool's header is not shipped with the wheel; its two entry points are exported by
// libexecutorch_threadpool.so.
namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  bool _unsafe_reset_threadpool(uint32_t num_threads);
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool

namespace esam3 {
namespace {

using executorch::aten::ScalarType;
using executorch::extension::Module;
using executorch::extension::TensorPtr;
using executorch::runtime::EValue;
using executorch::runtime::MethodMeta;
using executorch::runtime::Result;

// ExecuTorch logs every load at info level to stderr; keep errors (and everything with ESAM3_VERBOSE=1).
void emit_log_message(et_timestamp_t, et_pal_log_level_t level, const char* filename, const char*, size_t line,
                      const char* message, size_t length) {
  static const bool verbose = std::getenv("ESAM3_VERBOSE") != nullptr;
  if (!verbose && level != kError && level != kFatal) {
    return;
  }
  std::string text(message, length);
  for (char& c : text) {  // a corrupt file's bytes end up in messages; keep the output printable
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) {
      c = '?';
    }
  }
  std::fprintf(stderr, "executorch %c %s:%zu] %s\n", static_cast<char>(level), filename, line, text.c_str());
}

void quiet_executorch_logs() {
  static const bool registered = executorch::runtime::register_pal(
      executorch::runtime::PalImpl::create(emit_log_message, __FILE__));
  (void)registered;
}

// Expected signature of one tensor: dtype and sizes.
struct TensorSpec {
  ScalarType dtype;
  std::vector<int32_t> sizes;
};

std::string describe(const TensorSpec& spec) {
  std::ostringstream text;
  text << executorch::runtime::toString(spec.dtype) << " [";
  for (size_t i = 0; i < spec.sizes.size(); ++i) {
    text << (i ? ", " : "") << spec.sizes[i];
  }
  text << "]";
  return text.str();
}

TensorSpec spec_of(const executorch::runtime::TensorInfo& info) {
  TensorSpec spec{info.scalar_type(), {}};
  for (int32_t size : info.sizes()) {
    spec.sizes.push_back(size);
  }
  return spec;
}

bool same(const TensorSpec& a, const TensorSpec& b) { return a.dtype == b.dtype && a.sizes == b.sizes; }

std::string error_text(executorch::runtime::Error error) { return executorch::runtime::to_string(error); }

}  // namespace

struct Program::Impl {
  std::string path;
  ModelInfo info;
  std::unique_ptr<Module> module;
  std::vector<EValue> frame_outputs;  // keeps encode_frame's output views alive
  std::vector<EValue> decode_outputs;  // and decode's, until the next decode

  void check_method(const std::string& method, const std::vector<TensorSpec>& inputs,
                    const std::vector<TensorSpec>& outputs) {
    Result<MethodMeta> meta = module->method_meta(method);
    if (!meta.ok()) {
      throw Esam3Error(path + ": cannot read method '" + method + "' (" + error_text(meta.error()) + ")");
    }
    auto check = [&](const char* kind, size_t count, const std::vector<TensorSpec>& expected, auto tensor_meta) {
      if (count != expected.size()) {
        throw Esam3Error(path + ": method '" + method + "' has " + std::to_string(count) + " " + kind + "s, the export contract has " +
                         std::to_string(expected.size()) + " (is this an EfficientSAM3 export of preset '" + info.preset + "'?)");
      }
      for (size_t i = 0; i < count; ++i) {
        Result<executorch::runtime::TensorInfo> tensor = tensor_meta(i);
        if (!tensor.ok()) {
          throw Esam3Error(path + ": method '" + method + "' " + kind + " " + std::to_string(i) + " is not a tensor");
        }
        const TensorSpec actual = spec_of(*tensor);
        if (!same(actual, expected[i])) {
          throw Esam3Error(path + ": method '" + method + "' " + kind + " " + std::to_string(i) + " is " + describe(actual) +
                           ", expected " + describe(expected[i]) + " from the metadata (" + metadata_path_for(path) + ")");
        }
      }
    };
    check("input", meta->num_inputs(), inputs, [&](size_t i) { return meta->input_tensor_meta(i); });
    check("output", meta->num_outputs(), outputs, [&](size_t i) { return meta->output_tensor_meta(i); });
    const executorch::runtime::Error loaded = module->load_method(method);
    if (loaded != executorch::runtime::Error::Ok) {
      throw Esam3Error(path + ": cannot load method '" + method + "' (" + error_text(loaded) +
                       "); is the runtime built with the XNNPACK backend and the optimized kernels?");
    }
  }

  std::vector<EValue> run(const std::string& method, const std::vector<EValue>& inputs) {
    Result<std::vector<EValue>> outputs = module->execute(method, inputs);
    if (!outputs.ok()) {
      throw Esam3Error(path + ": method '" + method + "' failed (" + error_text(outputs.error()) + ")");
    }
    return std::move(*outputs);
  }
};

Program::Program(const std::string& pte_path, const ModelInfo& info, int num_threads) : impl_(new Impl) {
  quiet_executorch_logs();
  impl_->path = pte_path;
  impl_->info = info;
  if (!std::ifstream(pte_path, std::ios::binary)) {
    throw Esam3Error(pte_path + ": model not found or not readable");
  }
  if (num_threads > 0) {
    executorch::extension::threadpool::get_threadpool()->_unsafe_reset_threadpool(static_cast<uint32_t>(num_threads));
  }
  impl_->module = std::make_unique<Module>(pte_path, Module::LoadMode::Mmap);
  const executorch::runtime::Error loaded = impl_->module->load();
  if (loaded != executorch::runtime::Error::Ok) {
    throw Esam3Error(pte_path + ": not a loadable ExecuTorch program (" + error_text(loaded) + ")");
  }
  auto names = impl_->module->method_names();
  if (!names.ok()) {
    throw Esam3Error(pte_path + ": cannot list the program's methods (" + error_text(names.error()) + ")");
  }
  for (const char* method : {"encode_frame", "decode"}) {
    if (!names->count(method)) {
      std::string found;
      for (const std::string& name : *names) {
        found += (found.empty() ? "" : ", ") + name;
      }
      throw Esam3Error(pte_path + ": the program has no method '" + method + "' (it has: " + found +
                       "); export it with python -m export.executorch");
    }
  }

  const int32_t size = info.image_size, width = info.hidden_size, queries = info.num_queries;
  const int32_t slots = info.context_frames, length = info.max_text_length;
  const std::vector<int> sides = info.fpn_sides();
  std::vector<TensorSpec> levels;
  for (int side : sides) {
    levels.push_back({ScalarType::Float, {1, width, side, side}});
  }
  impl_->check_method("encode_frame", {{ScalarType::Float, {1, 3, size, size}}}, levels);
  const int32_t grid = sides[3], mask = sides[0];
  // A decode taking up to max_prompts prompts reports its largest shapes (its prompt dimension's bound).
  const int32_t prompts = info.max_prompts;
  impl_->check_method("decode",
                      {levels[0], levels[1], levels[2],
                       {ScalarType::Float, {1, slots, width, grid, grid}},
                       {ScalarType::Bool, {1, slots}},
                       {ScalarType::Float, {prompts, length, width}},
                       {ScalarType::Long, {prompts, length}}},
                      {{ScalarType::Float, {prompts, queries, mask, mask}},
                       {ScalarType::Float, {prompts, queries, 4}},
                       {ScalarType::Float, {prompts, queries}},
                       {ScalarType::Float, {prompts, 1}},
                       {ScalarType::Float, {prompts, queries}}});
}

Program::~Program() = default;

const ModelInfo& Program::info() const { return impl_->info; }

FrameFeatures Program::encode_frame(const float* pixel_values) {
  const ModelInfo& info = impl_->info;
  TensorPtr pixels = executorch::extension::from_blob(const_cast<float*>(pixel_values),
                                                      {1, 3, info.image_size, info.image_size}, ScalarType::Float);
  impl_->frame_outputs = impl_->run("encode_frame", {pixels});
  FrameFeatures features;
  for (int level = 0; level < 3; ++level) {
    features.fpn[level] = impl_->frame_outputs[level].toTensor().const_data_ptr<float>();
  }
  features.memory_feature = impl_->frame_outputs[3].toTensor().const_data_ptr<float>();
  return features;
}

std::vector<DecodeOutput> Program::decode(const FrameFeatures& frame, const float* memory_features,
                                          const uint8_t* memory_mask, const float* text_features,
                                          const int64_t* text_mask, int num_prompts) {
  const ModelInfo& info = impl_->info;
  if (num_prompts < 1 || num_prompts > info.max_prompts) {
    throw Esam3Error(impl_->path + ": decode takes 1 to " + std::to_string(info.max_prompts) + " prompts per call, got " +
                     std::to_string(num_prompts));
  }
  const std::vector<int> sides = info.fpn_sides();
  const int32_t width = info.hidden_size, slots = info.context_frames, length = info.max_text_length;
  std::vector<EValue> inputs;
  std::vector<TensorPtr> tensors;  // own the tensor objects while decode runs
  for (int level = 0; level < 3; ++level) {
    tensors.push_back(executorch::extension::from_blob(const_cast<float*>(frame.fpn[level]),
                                                       {1, width, sides[level], sides[level]}, ScalarType::Float));
  }
  tensors.push_back(executorch::extension::from_blob(const_cast<float*>(memory_features),
                                                     {1, slots, width, sides[3], sides[3]}, ScalarType::Float));
  tensors.push_back(executorch::extension::from_blob(const_cast<uint8_t*>(memory_mask), {1, slots}, ScalarType::Bool));
  tensors.push_back(executorch::extension::from_blob(const_cast<float*>(text_features), {num_prompts, length, width},
                                                     ScalarType::Float));
  tensors.push_back(executorch::extension::from_blob(const_cast<int64_t*>(text_mask), {num_prompts, length},
                                                     ScalarType::Long));
  for (const TensorPtr& tensor : tensors) {
    inputs.emplace_back(tensor);
  }
  impl_->decode_outputs = impl_->run("decode", inputs);
  const std::vector<EValue>& outputs = impl_->decode_outputs;
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (outputs[i].toTensor().size(0) != num_prompts) {
      throw Esam3Error(impl_->path + ": decode output " + std::to_string(i) + " has " +
                       std::to_string(outputs[i].toTensor().size(0)) + " rows for " + std::to_string(num_prompts) +
                       " prompts");
    }
  }
  const int queries = info.num_queries, side = sides[0];
  std::vector<DecodeOutput> results(num_prompts);
  for (int p = 0; p < num_prompts; ++p) {
    DecodeOutput& output = results[p];
    output.pred_masks = outputs[0].toTensor().const_data_ptr<float>() + static_cast<size_t>(p) * queries * side * side;
    output.pred_boxes = outputs[1].toTensor().const_data_ptr<float>() + static_cast<size_t>(p) * queries * 4;
    output.pred_logits = outputs[2].toTensor().const_data_ptr<float>() + static_cast<size_t>(p) * queries;
    output.presence_logit = outputs[3].toTensor().const_data_ptr<float>()[p];
    output.iou_scores = outputs[4].toTensor().const_data_ptr<float>() + static_cast<size_t>(p) * queries;
    output.num_queries = queries;
    output.mask_size = side;
  }
  return results;
}

}  // namespace esam3

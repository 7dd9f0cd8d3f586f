#include "model/dense.h"

#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "loader/checkpoint.h"

namespace qwen3 {

namespace {

int64_t Features(const json::Value& config, const char* key, const std::string& source) {
  const json::Value* v = json::Find(config, key);
  if (v == nullptr || !v->is_number_integer() || v->get<int64_t>() <= 0) {
    ThrowModelLoadFailed(source + ": \"" + key + "\" must be a positive integer");
  }
  return v->get<int64_t>();
}

}  // namespace

DenseLayers DenseLayers::Load(const std::vector<std::string>& dirs, int64_t hidden_size) {
  DenseLayers dense;
  int64_t in_expected = hidden_size;
  for (const std::string& dir : dirs) {
    const std::string source = dir + "/config.json";
    const json::Value config = ReadConfigJson(dir);
    if (!config.is_object()) ThrowModelLoadFailed(source + ": not a JSON object");
    const int64_t in = Features(config, "in_features", source);
    const int64_t out = Features(config, "out_features", source);
    if (in != in_expected) {
      ThrowModelLoadFailed(source + ": in_features is " + std::to_string(in) +
                           " but its input has " + std::to_string(in_expected) + " features");
    }
    bool bias = true;  // sentence-transformers' default
    if (const json::Value* b = json::Find(config, "bias"); b != nullptr && !b->is_null()) {
      if (!b->is_boolean()) ThrowModelLoadFailed(source + ": \"bias\" must be a boolean");
      bias = b->get<bool>();
    }
    Layer layer;
    std::string activation = "torch.nn.modules.activation.Tanh";  // sentence-transformers' default
    if (const json::Value* a = json::Find(config, "activation_function");
        a != nullptr && !a->is_null()) {
      if (!a->is_string())
        ThrowModelLoadFailed(source + ": \"activation_function\" must be a string");
      activation = a->get<std::string>();
    }
    if (activation == "torch.nn.modules.activation.Tanh") {
      layer.tanh = true;
    } else if (activation != "torch.nn.modules.linear.Identity") {
      ThrowModelLoadFailed(source + ": activation_function \"" + activation +
                           "\" is not supported (torch.nn.modules.linear.Identity and "
                           "torch.nn.modules.activation.Tanh are)");
    }
    const auto checkpoint = Checkpoint::Open(dir);
    checkpoint->CheckWeight("linear.weight", {out, in});
    layer.weight = checkpoint->Get("linear.weight").to(at::kFloat).contiguous();
    if (bias) {
      checkpoint->CheckWeight("linear.bias", {out});
      layer.bias = checkpoint->Get("linear.bias").to(at::kFloat).contiguous();
    }
    dense.layers_.push_back(std::move(layer));
    in_expected = out;
  }
  return dense;
}

int64_t DenseLayers::output_dimension(int64_t hidden_size) const {
  return layers_.empty() ? hidden_size : layers_.back().weight.size(0);
}

DenseLayers DenseLayers::To(const at::Device& device) const {
  DenseLayers copy;
  for (const Layer& layer : layers_) {
    Layer moved;
    moved.weight = layer.weight.to(device);
    if (layer.bias.defined()) moved.bias = layer.bias.to(device);
    moved.tanh = layer.tanh;
    copy.layers_.push_back(std::move(moved));
  }
  return copy;
}

at::Tensor DenseLayers::Forward(const at::Tensor& rows) const {
  at::Tensor x = rows.to(at::kFloat);
  for (const Layer& layer : layers_) {
    x = layer.bias.defined() ? at::linear(x, layer.weight, layer.bias)
                             : at::linear(x, layer.weight);
    if (layer.tanh) x = at::tanh(x);
  }
  return x;
}

}  // namespace qwen3

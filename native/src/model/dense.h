// sentence-transformers Dense modules (modules.json entries of type
// sentence_transformers.models.Dense), applied to the pooled rows in modules.json order:
// y = activation(x W^T + b), activation Identity or Tanh. Computed in fp32 on the pooled rows'
// device; the weights are small (out_features x in_features each).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace qwen3 {

class DenseLayers {
 public:
  DenseLayers() = default;
  // Reads each directory's config.json (in_features, out_features, bias, activation_function)
  // and its weights (linear.weight, linear.bias) through Checkpoint; the first layer's
  // in_features must be `hidden_size` and each next one's the previous out_features. Throws
  // kModelLoadFailed naming the file.
  static DenseLayers Load(const std::vector<std::string>& dirs, int64_t hidden_size);

  bool empty() const { return layers_.empty(); }
  // The last layer's out_features, else `hidden_size`.
  int64_t output_dimension(int64_t hidden_size) const;
  // A copy with every weight on `device` (fp32).
  DenseLayers To(const at::Device& device) const;
  // rows [n, in] -> [n, out] fp32.
  at::Tensor Forward(const at::Tensor& rows) const;

 private:
  struct Layer {
    at::Tensor weight;  // [out, in] fp32
    at::Tensor bias;    // [out] fp32 or undefined
    bool tanh = false;
  };
  std::vector<Layer> layers_;
};

}  // namespace qwen3

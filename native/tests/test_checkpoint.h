// Writes tiny Hugging Face-style decoder checkpoints (Qwen3 by default; Qwen2, Mistral, Llama) with
// seeded random weights for the tests, and keeps the weights (as stored, widened to fp32) for
// reference computations.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace qwen3::testing {

struct TinyConfig {
  int64_t hidden = 64;
  int64_t layers = 2;
  int64_t heads = 8;
  int64_t kv_heads = 4;
  int64_t head_dim = 16;  // deliberately not hidden / heads
  int64_t intermediate = 128;
  int64_t vocab = 256;
  int64_t max_positions = 128;
  double eps = 1e-6;
  double theta = 1e6;
  // The family and what it changes in the layer.
  std::string model_type = "qwen3";
  bool qk_norm = true;
  bool qkv_bias = false;
  bool o_bias = false;
  bool mlp_bias = false;
  // rope_scaling as written to config.json: "default" (null), "linear" or "llama3".
  std::string rope_type = "default";
  double rope_factor = 1.0;
  double rope_low_freq_factor = 1.0;
  double rope_high_freq_factor = 4.0;
  int64_t rope_original_max_positions = 32;
  int64_t sliding_window = 0;  // mistral; 0: null
  // config.json's architectures[0] (empty: the family's default) and tie_word_embeddings.
  std::string architecture;
  bool tie_word_embeddings = true;
};

// Tiny configurations of the other decoder families: Qwen2 (q/k/v biases), Mistral (no biases,
// sliding window), Llama (attention and MLP biases, llama3 rope scaling).
TinyConfig Qwen2Tiny();
TinyConfig MistralTiny();
TinyConfig LlamaTiny();

struct CheckpointSpec {
  TinyConfig config;
  std::string dtype = "BF16";  // BF16, F16 or F32
  int shards = 1;              // > 1 writes model-0000i-of-0000n.safetensors + index
  bool model_prefix = false;   // names as Qwen3ForCausalLM writes them ("model.layers...")
  bool pytorch_bin = false;    // pytorch_model.bin (torch.save zip) instead of safetensors
  // A task model's top-level tensors (never prefixed), kept in WrittenCheckpoint::weights too: an
  // lm_head.weight of its own (an untied CausalLM), and score.weight [score_labels, hidden]
  // (Qwen3ForSequenceClassification; 0: none). Without either, model_prefix and an empty
  // config.architecture also write lm_head.weight as a copy of the embeddings.
  bool lm_head = false;
  int64_t score_labels = 0;
  uint64_t seed = 0;
};

// A directory under the system temp dir, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Join(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct WrittenCheckpoint {
  std::string dir;
  // Unprefixed name -> weight as stored, in fp32.
  std::map<std::string, at::Tensor> weights;
};

std::string ConfigJson(const TinyConfig& config);
// Every tensor of the model, with its shape, in checkpoint order.
std::vector<std::pair<std::string, std::vector<int64_t>>> TensorShapes(const TinyConfig& config);
WrittenCheckpoint WriteCheckpoint(const std::string& dir, const CheckpointSpec& spec);

// ---- Encoder checkpoints (BERT, XLM-RoBERTa) ----

struct EncoderSpec {
  std::string model_type = "bert";  // or "xlm-roberta"
  int64_t hidden = 64;
  int64_t layers = 2;
  int64_t heads = 4;
  int64_t intermediate = 128;
  int64_t vocab = 256;
  int64_t max_positions = 40;  // rows of the position table (config.json's value)
  int64_t type_vocab = 2;
  int64_t pad_token_id = 0;  // 1 for xlm-roberta, as its tokenizer has it
  double eps = 1e-12;
  std::string hidden_act = "gelu";
  std::string dtype = "F32";       // BF16, F16 or F32
  std::string prefix;              // "", "bert." or "roberta."
  bool legacy_norm_names = false;  // LayerNorm.gamma / LayerNorm.beta
  uint64_t seed = 0;

  // The longest sequence: XLM-RoBERTa's positions start at pad_token_id + 1.
  int64_t max_sequence() const {
    return model_type == "xlm-roberta" ? max_positions - pad_token_id - 1 : max_positions;
  }
};

// The small BERT / XLM-RoBERTa presets the encoder tests use.
EncoderSpec BertSpec();
EncoderSpec XlmRobertaSpec();

std::string EncoderConfigJson(const EncoderSpec& spec);
// Writes config.json and model.safetensors as transformers' BertModel / XLMRobertaModel save them
// (with spec.prefix: as a task model's base). WrittenCheckpoint::weights holds the unprefixed
// transformers names (LayerNorm.weight / .bias).
WrittenCheckpoint WriteEncoderCheckpoint(const std::string& dir, const EncoderSpec& spec);

// Raw safetensors writing, for corrupt-file tests. `tensors` are written in order with `dtype`
// ("BF16", "F16", "F32" or "I32").
void WriteSafetensors(const std::string& path,
                      const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::string& dtype);
void WriteSafetensorsRaw(const std::string& path, const std::string& header_json,
                         const std::string& data);

// A state_dict pickle (protocol 2) as torch.save writes it: {name: _rebuild_tensor_v2(...)}, tensor
// i in storage "i". `ordered_dict`: the top level as collections.OrderedDict with its _metadata
// (torch.save(module.state_dict())), else a plain dict (transformers' save_pretrained).
std::string StateDictPickle(const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                            const std::string& dtype, bool ordered_dict = false);
// torch.save's zip layout written by libtorch's own PyTorchStreamWriter (archive "<file stem>/",
// records data.pkl, data/<i>, version). `pickle` replaces the encoded data.pkl when not empty.
void WritePytorchBin(const std::string& path,
                     const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                     const std::string& dtype, bool ordered_dict = false,
                     const std::string& pickle = "");

std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& contents);

// POSIX file helpers. The tests avoid std::filesystem: PyTorch's libtorch.so exports its own copy
// of some std::filesystem symbols, which interpose on the toolchain's and crash.
void MakeDirs(const std::string& path);
void RemoveFile(const std::string& path);
uint64_t FileSize(const std::string& path);
void ResizeFile(const std::string& path, uint64_t size);

}  // namespace qwen3::testing

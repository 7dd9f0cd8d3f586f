#include "test_checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <caffe2/serialize/inline_container.h>
#include <ftw.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace qwen3::testing {

namespace {

int RemoveEntry(const char* path, const struct stat* /*st*/, int /*flag*/, struct FTW* /*ftw*/) {
  return ::remove(path);
}

}  // namespace

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern =
      std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/qwen3-test-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

TempDir::~TempDir() { ::nftw(path_.c_str(), RemoveEntry, 16, FTW_DEPTH | FTW_PHYS); }

void MakeDirs(const std::string& path) {
  for (size_t at = 1; at <= path.size(); ++at) {
    if (at == path.size() || path[at] == '/') {
      const std::string prefix = path.substr(0, at);
      if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
        throw std::runtime_error("cannot create " + prefix);
      }
    }
  }
}

void RemoveFile(const std::string& path) {
  if (::unlink(path.c_str()) != 0) throw std::runtime_error("cannot remove " + path);
}

uint64_t FileSize(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw std::runtime_error("cannot stat " + path);
  return static_cast<uint64_t>(st.st_size);
}

void ResizeFile(const std::string& path, uint64_t size) {
  if (::truncate(path.c_str(), static_cast<off_t>(size)) != 0) {
    throw std::runtime_error("cannot resize " + path);
  }
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
  if (!out) throw std::runtime_error("cannot write " + path);
}

TinyConfig Qwen2Tiny() {
  TinyConfig c;
  c.model_type = "qwen2";
  c.qk_norm = false;
  c.qkv_bias = true;
  c.head_dim = c.hidden / c.heads;  // Qwen2 has no head_dim field
  c.theta = 1e6;
  return c;
}

TinyConfig MistralTiny() {
  TinyConfig c;
  c.model_type = "mistral";
  c.qk_norm = false;
  c.theta = 1e4;
  c.eps = 1e-5;
  c.sliding_window = 96;  // below max_positions: the engine caps sequences at the window
  return c;
}

TinyConfig LlamaTiny() {
  TinyConfig c;
  c.model_type = "llama";
  c.qk_norm = false;
  c.qkv_bias = c.o_bias = true;
  c.mlp_bias = true;
  c.theta = 1e4;  // with head_dim 16: one frequency in each llama3 band
  c.eps = 1e-5;
  c.rope_type = "llama3";
  c.rope_factor = 8.0;
  c.rope_low_freq_factor = 1.0;
  c.rope_high_freq_factor = 4.0;
  c.rope_original_max_positions = 32;  // so the tiny head_dim's frequencies span all three bands
  return c;
}

std::string ConfigJson(const TinyConfig& c) {
  std::string architecture = "Qwen3ForCausalLM";
  if (c.model_type == "qwen2") architecture = "Qwen2Model";
  if (c.model_type == "mistral") architecture = "MistralModel";
  if (c.model_type == "llama") architecture = "LlamaModel";
  if (!c.architecture.empty()) architecture = c.architecture;
  std::ostringstream o;
  o.precision(17);
  o << "{\n"
    << "  \"architectures\": [\"" << architecture << "\"],\n"
    << "  \"model_type\": \"" << c.model_type << "\",\n"
    << "  \"hidden_size\": " << c.hidden << ",\n"
    << "  \"num_hidden_layers\": " << c.layers << ",\n"
    << "  \"num_attention_heads\": " << c.heads << ",\n"
    << "  \"num_key_value_heads\": " << c.kv_heads << ",\n";
  if (c.model_type != "qwen2") o << "  \"head_dim\": " << c.head_dim << ",\n";
  o << "  \"intermediate_size\": " << c.intermediate << ",\n"
    << "  \"vocab_size\": " << c.vocab << ",\n"
    << "  \"max_position_embeddings\": " << c.max_positions << ",\n"
    << "  \"rms_norm_eps\": " << c.eps << ",\n"
    << "  \"rope_theta\": " << c.theta << ",\n";
  if (c.rope_type == "default") {
    o << "  \"rope_scaling\": null,\n";
  } else {
    o << "  \"rope_scaling\": {\"rope_type\": \"" << c.rope_type
      << "\", \"factor\": " << c.rope_factor << ", \"low_freq_factor\": " << c.rope_low_freq_factor
      << ", \"high_freq_factor\": " << c.rope_high_freq_factor
      << ", \"original_max_position_embeddings\": " << c.rope_original_max_positions << "},\n";
  }
  if (c.model_type == "mistral") {
    o << "  \"sliding_window\": "
      << (c.sliding_window > 0 ? std::to_string(c.sliding_window) : "null") << ",\n";
  } else if (c.model_type == "llama") {
    o << "  \"mlp_bias\": " << (c.mlp_bias ? "true" : "false") << ",\n";
  }
  if (c.model_type != "mistral") {
    o << "  \"attention_bias\": " << (c.o_bias ? "true" : "false") << ",\n";
  }
  if (c.model_type == "qwen3" || c.model_type == "qwen2") {
    o << "  \"use_sliding_window\": false,\n";
  }
  o << "  \"hidden_act\": \"silu\",\n"
    << "  \"tie_word_embeddings\": " << (c.tie_word_embeddings ? "true" : "false") << ",\n"
    << "  \"torch_dtype\": \"bfloat16\"\n"
    << "}\n";
  return o.str();
}

std::vector<std::pair<std::string, std::vector<int64_t>>> TensorShapes(const TinyConfig& c) {
  const int64_t q = c.heads * c.head_dim;
  const int64_t kv = c.kv_heads * c.head_dim;
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  shapes.push_back({"embed_tokens.weight", {c.vocab, c.hidden}});
  for (int64_t i = 0; i < c.layers; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    shapes.push_back({p + "input_layernorm.weight", {c.hidden}});
    shapes.push_back({p + "self_attn.q_proj.weight", {q, c.hidden}});
    shapes.push_back({p + "self_attn.k_proj.weight", {kv, c.hidden}});
    shapes.push_back({p + "self_attn.v_proj.weight", {kv, c.hidden}});
    shapes.push_back({p + "self_attn.o_proj.weight", {c.hidden, q}});
    if (c.qkv_bias) {
      shapes.push_back({p + "self_attn.q_proj.bias", {q}});
      shapes.push_back({p + "self_attn.k_proj.bias", {kv}});
      shapes.push_back({p + "self_attn.v_proj.bias", {kv}});
    }
    if (c.o_bias) shapes.push_back({p + "self_attn.o_proj.bias", {c.hidden}});
    if (c.qk_norm) {
      shapes.push_back({p + "self_attn.q_norm.weight", {c.head_dim}});
      shapes.push_back({p + "self_attn.k_norm.weight", {c.head_dim}});
    }
    shapes.push_back({p + "post_attention_layernorm.weight", {c.hidden}});
    shapes.push_back({p + "mlp.gate_proj.weight", {c.intermediate, c.hidden}});
    shapes.push_back({p + "mlp.up_proj.weight", {c.intermediate, c.hidden}});
    shapes.push_back({p + "mlp.down_proj.weight", {c.hidden, c.intermediate}});
    if (c.mlp_bias) {
      shapes.push_back({p + "mlp.gate_proj.bias", {c.intermediate}});
      shapes.push_back({p + "mlp.up_proj.bias", {c.intermediate}});
      shapes.push_back({p + "mlp.down_proj.bias", {c.hidden}});
    }
  }
  shapes.push_back({"norm.weight", {c.hidden}});
  return shapes;
}

namespace {

at::ScalarType DTypeOf(const std::string& dtype) {
  if (dtype == "BF16") return at::kBFloat16;
  if (dtype == "F16") return at::kHalf;
  if (dtype == "F32") return at::kFloat;
  if (dtype == "I32") return at::kInt;
  throw std::runtime_error("unknown dtype " + dtype);
}

std::string ShapeJson(at::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ",";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace

void WriteSafetensorsRaw(const std::string& path, const std::string& header_json,
                         const std::string& data) {
  std::string header = header_json;
  while (header.size() % 8 != 0) header += ' ';
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i)
    out[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  out += header;
  out += data;
  WriteFile(path, out);
}

void WriteSafetensors(const std::string& path,
                      const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::string& dtype) {
  std::string header = "{\"__metadata__\":{\"format\":\"pt\"}";
  std::string data;
  for (const auto& [name, tensor] : tensors) {
    at::Tensor t = tensor.to(DTypeOf(dtype)).contiguous();
    const size_t bytes = static_cast<size_t>(t.numel()) * t.element_size();
    header += ",\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + ShapeJson(t.sizes()) +
              ",\"data_offsets\":[" + std::to_string(data.size()) + "," +
              std::to_string(data.size() + bytes) + "]}";
    data.append(static_cast<const char*>(t.data_ptr()), bytes);
  }
  header += "}";
  WriteSafetensorsRaw(path, header, data);
}

namespace {

class PickleWriter {
 public:
  void Op(std::initializer_list<uint8_t> bytes) {
    for (uint8_t b : bytes) out_.push_back(static_cast<char>(b));
  }
  void Int(int64_t v) {
    if (v >= 0 && v < 256) {
      Op({'K', static_cast<uint8_t>(v)});
    } else if (v >= 0 && v < 65536) {
      Op({'M', static_cast<uint8_t>(v & 0xff), static_cast<uint8_t>(v >> 8)});
    } else {
      Op({'J'});
      for (int i = 0; i < 4; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
    }
  }
  void String(const std::string& s) {
    Op({'X'});
    for (int i = 0; i < 4; ++i) out_.push_back(static_cast<char>((s.size() >> (8 * i)) & 0xff));
    out_ += s;
  }
  void Global(const std::string& module, const std::string& name) {
    out_ += "c" + module + "\n" + name + "\n";
  }
  void Tuple(at::IntArrayRef values) {
    if (values.empty()) return Op({')'});
    Op({'('});
    for (int64_t v : values) Int(v);
    Op({'t'});
  }
  const std::string& bytes() const { return out_; }

 private:
  std::string out_;
};

std::string StorageClass(const std::string& dtype) {
  if (dtype == "BF16") return "BFloat16Storage";
  if (dtype == "F16") return "HalfStorage";
  if (dtype == "F32") return "FloatStorage";
  if (dtype == "I32") return "IntStorage";
  throw std::runtime_error("unknown dtype " + dtype);
}

}  // namespace

std::string StateDictPickle(const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                            const std::string& dtype, bool ordered_dict) {
  PickleWriter p;
  p.Op({0x80, 2});
  if (ordered_dict) {
    p.Global("collections", "OrderedDict");
    p.Op({'q', 0, ')', 'R'});
  } else {
    p.Op({'}'});
  }
  p.Op({'('});
  for (size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor& t = tensors[i].second;
    p.String(tensors[i].first);
    p.Global("torch._utils", "_rebuild_tensor_v2");
    p.Op({'(', '('});
    p.String("storage");
    p.Global("torch", StorageClass(dtype));
    p.String(std::to_string(i));
    p.String("cpu");
    p.Int(t.numel());
    p.Op({'t', 'Q'});
    p.Int(0);
    p.Tuple(t.sizes());
    p.Tuple(t.contiguous().strides());
    p.Op({0x89});
    if (ordered_dict) {
      p.Op({'h', 0});  // the memoised OrderedDict
    } else {
      p.Global("collections", "OrderedDict");
    }
    p.Op({')', 'R', 't', 'R'});
  }
  p.Op({'u'});
  if (ordered_dict) {
    p.Op({'}', '('});
    p.String("_metadata");
    p.Op({'h', 0, ')', 'R', '('});
    p.String("");
    p.Op({'}', '('});
    p.String("version");
    p.Int(1);
    p.Op({'u', 'u', 'u', 'b'});
  }
  p.Op({'.'});
  return p.bytes();
}

void WritePytorchBin(const std::string& path,
                     const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                     const std::string& dtype, bool ordered_dict, const std::string& pickle) {
  const std::string data_pkl =
      pickle.empty() ? StateDictPickle(tensors, dtype, ordered_dict) : pickle;
  caffe2::serialize::PyTorchStreamWriter writer(path);
  writer.writeRecord("data.pkl", data_pkl.data(), data_pkl.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    at::Tensor t = tensors[i].second.to(DTypeOf(dtype)).contiguous();
    writer.writeRecord("data/" + std::to_string(i), t.data_ptr(),
                       static_cast<size_t>(t.numel()) * t.element_size());
  }
  writer.writeEndOfFile();
}

WrittenCheckpoint WriteCheckpoint(const std::string& dir, const CheckpointSpec& spec) {
  MakeDirs(dir);
  WriteFile(dir + "/config.json", ConfigJson(spec.config));

  at::Generator gen = at::detail::createCPUGenerator(spec.seed);
  WrittenCheckpoint written;
  written.dir = dir;
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& [name, shape] : TensorShapes(spec.config)) {
    at::Tensor w = at::randn(shape, gen, at::TensorOptions().dtype(at::kFloat));
    if (name.find("norm.weight") != std::string::npos) {
      w = 1.0 + 0.2 * w;
    } else if (name == "embed_tokens.weight") {
      w = 0.5 * w;
    } else if (name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0) {
      w = 0.2 * w;
    } else {
      w = w / std::sqrt(static_cast<double>(shape.back()));
    }
    w = w.to(DTypeOf(spec.dtype)).to(at::kFloat);  // what the file will hold
    written.weights[name] = w;
    tensors.push_back({(spec.model_prefix ? "model." : "") + name, w});
  }
  const auto head_weight = [&](const std::string& name, std::vector<int64_t> shape) {
    at::Tensor w = at::randn(shape, gen, at::TensorOptions().dtype(at::kFloat)) /
                   std::sqrt(static_cast<double>(shape.back()));
    w = w.to(DTypeOf(spec.dtype)).to(at::kFloat);
    written.weights[name] = w;
    tensors.push_back({name, w});
  };
  if (spec.lm_head) head_weight("lm_head.weight", {spec.config.vocab, spec.config.hidden});
  if (spec.score_labels > 0) head_weight("score.weight", {spec.score_labels, spec.config.hidden});
  if (spec.model_prefix && !spec.lm_head && spec.score_labels == 0 &&
      spec.config.architecture.empty()) {
    // Qwen3ForCausalLM checkpoints also carry the LM head, which the embedding model ignores.
    tensors.push_back({"lm_head.weight", written.weights.at("embed_tokens.weight")});
  }

  const std::string stem = spec.pytorch_bin ? "pytorch_model" : "model";
  const std::string extension = spec.pytorch_bin ? ".bin" : ".safetensors";
  auto write = [&](const std::string& path,
                   const std::vector<std::pair<std::string, at::Tensor>>& part) {
    if (spec.pytorch_bin) {
      WritePytorchBin(path, part, spec.dtype);
    } else {
      WriteSafetensors(path, part, spec.dtype);
    }
  };
  if (spec.shards <= 1) {
    write(dir + "/" + stem + extension, tensors);
    return written;
  }
  const size_t per_shard = (tensors.size() + spec.shards - 1) / static_cast<size_t>(spec.shards);
  std::string weight_map;
  for (int s = 0; s < spec.shards; ++s) {
    char file[64];
    std::snprintf(file, sizeof(file), "%s-%05d-of-%05d%s", stem.c_str(), s + 1, spec.shards,
                  extension.c_str());
    const size_t begin = s * per_shard;
    const size_t end = std::min(tensors.size(), begin + per_shard);
    std::vector<std::pair<std::string, at::Tensor>> part(tensors.begin() + begin,
                                                         tensors.begin() + end);
    write(dir + "/" + file, part);
    for (const auto& [name, tensor] : part) {
      (void)tensor;
      if (!weight_map.empty()) weight_map += ",\n";
      weight_map += "    \"" + name + "\": \"" + file + "\"";
    }
  }
  WriteFile(
      dir + "/" + stem + extension + ".index.json",
      "{\n  \"metadata\": {\"total_size\": 0},\n  \"weight_map\": {\n" + weight_map + "\n  }\n}\n");
  return written;
}

EncoderSpec BertSpec() { return EncoderSpec{}; }

EncoderSpec XlmRobertaSpec() {
  EncoderSpec spec;
  spec.model_type = "xlm-roberta";
  spec.pad_token_id = 1;
  spec.max_positions = 42;  // 40 tokens after the padding index, as 514 gives XLM-R 512
  spec.type_vocab = 1;
  spec.eps = 1e-5;
  return spec;
}

std::string EncoderConfigJson(const EncoderSpec& s) {
  const bool roberta = s.model_type == "xlm-roberta";
  std::ostringstream o;
  o.precision(17);
  o << "{\n"
    << "  \"architectures\": [\"" << (roberta ? "XLMRobertaModel" : "BertModel") << "\"],\n"
    << "  \"model_type\": \"" << s.model_type << "\",\n"
    << "  \"hidden_size\": " << s.hidden << ",\n"
    << "  \"num_hidden_layers\": " << s.layers << ",\n"
    << "  \"num_attention_heads\": " << s.heads << ",\n"
    << "  \"intermediate_size\": " << s.intermediate << ",\n"
    << "  \"vocab_size\": " << s.vocab << ",\n"
    << "  \"max_position_embeddings\": " << s.max_positions << ",\n"
    << "  \"type_vocab_size\": " << s.type_vocab << ",\n"
    << "  \"layer_norm_eps\": " << s.eps << ",\n"
    << "  \"hidden_act\": \"" << s.hidden_act << "\",\n"
    << "  \"pad_token_id\": " << s.pad_token_id << ",\n"
    << "  \"position_embedding_type\": \"absolute\",\n"
    << "  \"hidden_dropout_prob\": 0.1,\n"
    << "  \"attention_probs_dropout_prob\": 0.1,\n"
    << "  \"initializer_range\": 0.02,\n"
    << "  \"use_cache\": true,\n"
    << "  \"torch_dtype\": \"float32\"\n"
    << "}\n";
  return o.str();
}

WrittenCheckpoint WriteEncoderCheckpoint(const std::string& dir, const EncoderSpec& s) {
  MakeDirs(dir);
  WriteFile(dir + "/config.json", EncoderConfigJson(s));
  const int64_t h = s.hidden;
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes = {
      {"embeddings.word_embeddings.weight", {s.vocab, h}},
      {"embeddings.position_embeddings.weight", {s.max_positions, h}},
      {"embeddings.token_type_embeddings.weight", {s.type_vocab, h}},
      {"embeddings.LayerNorm.weight", {h}},
      {"embeddings.LayerNorm.bias", {h}},
  };
  for (int64_t i = 0; i < s.layers; ++i) {
    const std::string p = "encoder.layer." + std::to_string(i) + ".";
    for (const char* name : {"attention.self.query", "attention.self.key", "attention.self.value",
                             "attention.output.dense"}) {
      shapes.push_back({p + name + ".weight", {h, h}});
      shapes.push_back({p + name + ".bias", {h}});
    }
    shapes.push_back({p + "attention.output.LayerNorm.weight", {h}});
    shapes.push_back({p + "attention.output.LayerNorm.bias", {h}});
    shapes.push_back({p + "intermediate.dense.weight", {s.intermediate, h}});
    shapes.push_back({p + "intermediate.dense.bias", {s.intermediate}});
    shapes.push_back({p + "output.dense.weight", {h, s.intermediate}});
    shapes.push_back({p + "output.dense.bias", {h}});
    shapes.push_back({p + "output.LayerNorm.weight", {h}});
    shapes.push_back({p + "output.LayerNorm.bias", {h}});
  }
  // BertModel's pooler, which sentence-transformers never runs: present as in real checkpoints.
  shapes.push_back({"pooler.dense.weight", {h, h}});
  shapes.push_back({"pooler.dense.bias", {h}});

  at::Generator gen = at::detail::createCPUGenerator(s.seed);
  WrittenCheckpoint written;
  written.dir = dir;
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& [name, shape] : shapes) {
    at::Tensor w = at::randn(shape, gen, at::TensorOptions().dtype(at::kFloat));
    const bool norm = name.find("LayerNorm") != std::string::npos;
    if (norm && name.size() > 6 && name.compare(name.size() - 6, 6, "weight") == 0) {
      w = 1.0 + 0.2 * w;
    } else if (norm || shape.size() == 1) {
      w = 0.1 * w;  // LayerNorm and dense biases
    } else if (name.find("embeddings") != std::string::npos) {
      w = 0.5 * w;
    } else {
      w = w / std::sqrt(static_cast<double>(shape.back()));
    }
    w = w.to(DTypeOf(s.dtype)).to(at::kFloat);  // what the file will hold
    written.weights[name] = w;
    std::string stored = s.prefix + name;
    if (s.legacy_norm_names && norm) {
      const size_t dot = stored.rfind('.');
      stored =
          stored.substr(0, dot) + (stored.compare(dot, 7, ".weight") == 0 ? ".gamma" : ".beta");
    }
    tensors.push_back({stored, w});
  }
  WriteSafetensors(dir + "/model.safetensors", tensors, s.dtype);
  return written;
}

}  // namespace qwen3::testing

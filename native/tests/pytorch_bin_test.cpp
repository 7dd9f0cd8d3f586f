// pytorch_model.bin through Checkpoint: written with libtorch's own PyTorchStreamWriter (the zip
// layout torch.save uses) and a state_dict pickle as torch.save emits it.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "loader/checkpoint.h"
#include "loader/pytorch_bin.h"
#include "model/config.h"
#include "model/embedding_model.h"
#include "test_checkpoint.h"
#include "test_util.h"

namespace qwen3 {
namespace {

using testing::CheckpointSpec;
using testing::ExpectError;
using testing::TempDir;
using TensorList = std::vector<std::pair<std::string, at::Tensor>>;

void OpenAndValidate(const std::string& dir) {
  const ModelConfig config = ModelConfig::FromJson(ReadConfigJson(dir), dir + "/config.json");
  auto checkpoint = Checkpoint::Open(dir);
  ValidateCheckpoint(*checkpoint, config);
}

// A config.json plus a pytorch_model.bin holding `tensors` (any names; not a whole model).
std::string WriteBinDir(const TempDir& tmp, const TensorList& tensors,
                        const std::string& dtype = "F32", const std::string& pickle = "") {
  testing::WriteFile(tmp.Join("config.json"), testing::ConfigJson(testing::TinyConfig{}));
  testing::WritePytorchBin(tmp.Join("pytorch_model.bin"), tensors, dtype, false, pickle);
  return tmp.Join("pytorch_model.bin");
}

struct Format {
  std::string dtype;
  int shards;
};

class PytorchBinEqualsSafetensors : public ::testing::TestWithParam<Format> {};

TEST_P(PytorchBinEqualsSafetensors, EveryTensorBitForBit) {
  TempDir st_dir;
  TempDir bin_dir;
  CheckpointSpec spec;
  spec.dtype = GetParam().dtype;
  spec.shards = GetParam().shards;
  spec.seed = 7;
  auto written = testing::WriteCheckpoint(st_dir.path(), spec);
  spec.pytorch_bin = true;
  testing::WriteCheckpoint(bin_dir.path(), spec);

  auto st = Checkpoint::Open(st_dir.path());
  std::vector<std::string> progress;
  auto bin =
      Checkpoint::Open(bin_dir.path(), [&](const std::string& line) { progress.push_back(line); });
  EXPECT_EQ(bin->num_files(), static_cast<size_t>(spec.shards));
  ASSERT_EQ(progress.size(), static_cast<size_t>(spec.shards));
  EXPECT_NE(progress[0].find(spec.shards == 1 ? "pytorch_model.bin" : "pytorch_model-00001-of-"),
            std::string::npos)
      << progress[0];
  for (const auto& [name, weight] : written.weights) {
    EXPECT_EQ(bin->Entry(name).dtype, st->Entry(name).dtype) << name;
    EXPECT_EQ(bin->Entry(name).shape, st->Entry(name).shape) << name;
    const at::Tensor a = st->Get(name);
    const at::Tensor b = bin->Get(name);
    ASSERT_EQ(b.scalar_type(), a.scalar_type()) << name;
    EXPECT_TRUE(at::equal(a, b)) << name;
    EXPECT_TRUE(at::equal(st->GetShard(name, 0, 1, 2), bin->GetShard(name, 0, 1, 2))) << name;
  }
  EXPECT_NO_THROW(OpenAndValidate(bin_dir.path()));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, PytorchBinEqualsSafetensors,
                         ::testing::Values(Format{"BF16", 1}, Format{"F16", 1}, Format{"F32", 1},
                                           Format{"BF16", 3}),
                         [](const auto& info) {
                           return info.param.dtype + "x" + std::to_string(info.param.shards);
                         });

TEST(PytorchBinTest, ReadsAnOrderedDictStateDictWithMetadata) {
  TempDir tmp;
  const TensorList tensors = {{"a.weight", at::arange(6, at::kFloat).reshape({2, 3})},
                              {"b.bias", at::tensor({0.5f, -1.25f})}};
  testing::WritePytorchBin(tmp.Join("pytorch_model.bin"), tensors, "F32", /*ordered_dict=*/true);
  PytorchBinFile file(tmp.Join("pytorch_model.bin"));
  ASSERT_EQ(file.tensors().size(), 2u);
  EXPECT_EQ(file.tensors()[0].name, "a.weight");
  EXPECT_EQ(file.tensors()[0].shape, (std::vector<int64_t>{2, 3}));
  const auto* bias = file.Find("b.bias");
  ASSERT_NE(bias, nullptr);
  EXPECT_EQ(bias->nbytes, 8u);
  const auto* values = reinterpret_cast<const float*>(file.data(*bias));
  EXPECT_EQ(values[0], 0.5f);
  EXPECT_EQ(values[1], -1.25f);
}

// Files torch.save itself wrote (scripts/reference/verify_torch_bin.py --fixtures; pickle protocols
// 2 and 4), with the values they were saved from.
TEST(PytorchBinTest, ReadsFilesTorchSaveWrote) {
  const std::string dir = QWEN3_TORCH_BIN_FIXTURES;
  const auto expected = nlohmann::json::parse(testing::ReadFile(dir + "/torch-fixtures.json"));
  ASSERT_GE(expected.size(), 5u);
  for (const auto& [file_name, tensors] : expected.items()) {
    PytorchBinFile file(dir + "/" + file_name);
    ASSERT_EQ(file.tensors().size(), tensors.size()) << file_name;
    for (const auto& [name, values] : tensors.items()) {
      const TensorEntry* entry = file.Find(name);
      ASSERT_NE(entry, nullptr) << file_name << " " << name;
      const at::ScalarType type = entry->dtype == StorageDType::kBF16  ? at::kBFloat16
                                  : entry->dtype == StorageDType::kF16 ? at::kHalf
                                                                       : at::kFloat;
      at::Tensor got = at::from_blob(const_cast<uint8_t*>(file.data(*entry)), {entry->numel()},
                                     at::TensorOptions().dtype(type))
                           .to(at::kFloat);
      std::vector<float> want = values.get<std::vector<float>>();
      EXPECT_TRUE(at::equal(got, at::tensor(want))) << file_name << " " << name;
    }
  }
  ExpectError([&] { PytorchBinFile legacy(dir + "/torch-legacy.bin"); },
              ErrorCode::kModelLoadFailed,
              {"torch-legacy.bin: is in the legacy torch.save format"});
}

TEST(PytorchBinTest, PrefersSafetensorsWhenBothArePresent) {
  TempDir tmp;
  CheckpointSpec spec;
  auto written = testing::WriteCheckpoint(tmp.path(), spec);
  spec.pytorch_bin = true;
  spec.seed = 1;  // different weights in the .bin
  testing::WriteCheckpoint(tmp.path(), spec);
  auto checkpoint = Checkpoint::Open(tmp.path());
  EXPECT_NE(checkpoint->FileOf("norm.weight").find("model.safetensors"), std::string::npos);
  EXPECT_TRUE(
      at::equal(checkpoint->Get("norm.weight").to(at::kFloat), written.weights.at("norm.weight")));
}

TEST(PytorchBinTest, RefusesAFileThatIsNotAZip) {
  TempDir tmp;
  testing::WriteFile(tmp.Join("config.json"), testing::ConfigJson(testing::TinyConfig{}));
  testing::WriteFile(tmp.Join("pytorch_model.bin"), "not a checkpoint");
  ExpectError([&] { Checkpoint::Open(tmp.path()); }, ErrorCode::kModelLoadFailed,
              {tmp.Join("pytorch_model.bin"), "is not a zip archive"});
}

TEST(PytorchBinTest, RefusesTheLegacyFormatSayingHowToConvert) {
  TempDir tmp;
  testing::WriteFile(tmp.Join("config.json"), testing::ConfigJson(testing::TinyConfig{}));
  // torch.save(..., _use_new_zipfile_serialization=False) begins with a pickled magic number.
  testing::WriteFile(tmp.Join("pytorch_model.bin"),
                     std::string("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.", 15));
  ExpectError([&] { Checkpoint::Open(tmp.path()); }, ErrorCode::kModelLoadFailed,
              {tmp.Join("pytorch_model.bin"), "legacy torch.save format",
               "torch.save(torch.load(path, weights_only=True), path)"});
}

TEST(PytorchBinTest, RefusesATruncatedArchive) {
  TempDir tmp;
  const std::string path = WriteBinDir(tmp, {{"w", at::ones({64, 64})}});
  testing::ResizeFile(path, testing::FileSize(path) - 100);
  ExpectError([&] { Checkpoint::Open(tmp.path()); }, ErrorCode::kModelLoadFailed,
              {path, "truncated or corrupt zip archive"});
}

TEST(PytorchBinTest, RefusesAForbiddenGlobalWithoutRunningIt) {
  TempDir tmp;
  std::string pickle = testing::StateDictPickle({{"w", at::ones({2})}}, "F32");
  const std::string call = "ctorch._utils\n_rebuild_tensor_v2\n";
  pickle.replace(pickle.find(call), call.size(), "cos\nsystem\n");
  const std::string path = WriteBinDir(tmp, {{"w", at::ones({2})}}, "F32", pickle);
  ExpectError([&] { Checkpoint::Open(tmp.path()); }, ErrorCode::kModelLoadFailed,
              {path, "data.pkl: refuses the global os.system"});
}

TEST(PytorchBinTest, RefusesANonTensorValueNamingIt) {
  TempDir tmp;
  std::string pickle = testing::StateDictPickle({{"w", at::ones({2})}}, "F32");
  // {'w': tensor, 'step': 5}: one more SETITEM before STOP
  pickle.insert(pickle.size() - 1, std::string("X\x04\x00\x00\x00stepK\x05s", 12));
  const std::string path = WriteBinDir(tmp, {{"w", at::ones({2})}}, "F32", pickle);
  ExpectError([&] { Checkpoint::Open(tmp.path()); }, ErrorCode::kModelLoadFailed,
              {path, "tensor 'step': value is an int, not a tensor"});
}

TEST(PytorchBinTest, RefusesUnexpectedOpcodesAndStorages) {
  const std::string path = "f.bin";
  std::string pickle = testing::StateDictPickle({{"w", at::ones({2})}}, "F32");
  std::string bad_opcode = pickle;
  bad_opcode.insert(2, "i");  // INST: never in a state_dict
  ExpectError(
      [&] {
        pytorch_bin::ParseStateDictPickle(path, reinterpret_cast<const uint8_t*>(bad_opcode.data()),
                                          bad_opcode.size());
      },
      ErrorCode::kModelLoadFailed, {"f.bin: data.pkl: unsupported opcode 0x69 at byte 2"});
  std::string complex = pickle;
  const std::string storage = "ctorch\nFloatStorage\n";
  complex.replace(complex.find(storage), storage.size(), "ctorch\nComplexFloatStorage\n");
  ExpectError(
      [&] {
        pytorch_bin::ParseStateDictPickle(path, reinterpret_cast<const uint8_t*>(complex.data()),
                                          complex.size());
      },
      ErrorCode::kModelLoadFailed, {"refuses the global torch.ComplexFloatStorage"});
  const std::string cut = pickle.substr(0, pickle.size() - 1);  // no STOP
  ExpectError(
      [&] {
        pytorch_bin::ParseStateDictPickle(path, reinterpret_cast<const uint8_t*>(cut.data()),
                                          cut.size());
      },
      ErrorCode::kModelLoadFailed, {"data.pkl: ends early"});
}

TEST(PytorchBinTest, RefusesADeeplyNestedOrCyclicPickleWithoutCrashing) {
  // A million tuples, each wrapping the last, then a list appended to itself: freeing either must
  // not recurse.
  std::string deep = "\x80\x02N" + std::string(1000000, '\x85') + ".";
  ExpectError(
      [&] {
        pytorch_bin::ParseStateDictPickle("f.bin", reinterpret_cast<const uint8_t*>(deep.data()),
                                          deep.size());
      },
      ErrorCode::kModelLoadFailed,
      {"f.bin: data.pkl: top level is a tuple, not a dict of tensors"});
  const std::string cyclic(
      "\x80\x02]q\x00h\x00"
      "a.",
      9);
  ExpectError(
      [&] {
        pytorch_bin::ParseStateDictPickle("f.bin", reinterpret_cast<const uint8_t*>(cyclic.data()),
                                          cyclic.size());
      },
      ErrorCode::kModelLoadFailed, {"top level is a list"});
}

TEST(PytorchBinTest, NamesFileAndTensorOfAWrongShapeOrDtype) {
  TempDir tmp;
  CheckpointSpec spec;
  spec.pytorch_bin = true;
  testing::WriteCheckpoint(tmp.path(), spec);
  auto checkpoint = Checkpoint::Open(tmp.path());
  ExpectError([&] { checkpoint->CheckWeight("norm.weight", {3}); }, ErrorCode::kModelLoadFailed,
              {tmp.Join("pytorch_model.bin"), "tensor 'norm.weight'", "does not match [3]"});

  TempDir ints;
  const std::string path = WriteBinDir(ints, {{"norm.weight", at::ones({4})}}, "I32");
  auto int_checkpoint = Checkpoint::Open(ints.path());
  ExpectError([&] { int_checkpoint->CheckWeight("norm.weight", {4}); }, ErrorCode::kModelLoadFailed,
              {path, "tensor 'norm.weight'", "dtype I32 is not supported"});
}

TEST(PytorchBinTest, NamesAShardTheIndexListsButTheDirectoryLacks) {
  TempDir tmp;
  CheckpointSpec spec;
  spec.pytorch_bin = true;
  spec.shards = 3;
  testing::WriteCheckpoint(tmp.path(), spec);
  testing::RemoveFile(tmp.Join("pytorch_model-00002-of-00003.bin"));
  ExpectError([&] { Checkpoint::Open(tmp.path()); }, ErrorCode::kModelLoadFailed,
              {"missing file", "pytorch_model-00002-of-00003.bin"});
}

}  // namespace
}  // namespace qwen3

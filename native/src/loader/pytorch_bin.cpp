#include "loader/pytorch_bin.h"

#include <c10/util/Exception.h>
#include <caffe2/serialize/inline_container.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "common/error.h"

namespace qwen3 {

namespace {

[[noreturn]] void Fail(const std::string& path, const std::string& message) {
  ThrowModelLoadFailed(path + ": " + message);
}

uint16_t ReadU16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t ReadU32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
uint64_t ReadU64(const uint8_t* p) {
  return static_cast<uint64_t>(ReadU32(p)) | (static_cast<uint64_t>(ReadU32(p + 4)) << 32);
}

constexpr uint32_t kLocalHeaderSignature = 0x04034b50;

// The first line of a c10::Error, without libtorch's backtrace.
std::string Brief(const c10::Error& e) {
  std::string message = e.what_without_backtrace();
  const size_t end = message.find('\n');
  return end == std::string::npos ? message : message.substr(0, end);
}

// ---------------------------------------------------------------------------------------------------
// The restricted pickle interpreter

struct Value;
// Values live in the unpickler's arena and point at each other with plain pointers: however deep
// or cyclic a hostile pickle nests them, freeing them is one flat loop, never a recursion.
using ValuePtr = Value*;

struct Value {
  enum class Kind {
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kTuple,
    kList,
    kDict,
    kGlobal,
    kStorage,
    kTensor,
    kMark
  };
  Kind kind = Kind::kNone;
  int64_t i = 0;
  std::string s;                                       // string, global name, storage key
  std::vector<ValuePtr> items;                         // tuple, list; tensor: {storage}
  std::vector<std::pair<ValuePtr, ValuePtr>> entries;  // dict, in insertion order
  StorageDType dtype = StorageDType::kF32;             // storage
  std::vector<int64_t> shape, stride;                  // tensor (i = storage offset)
};

const char* Describe(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kNone:
      return "None";
    case Value::Kind::kBool:
      return "a bool";
    case Value::Kind::kInt:
      return "an int";
    case Value::Kind::kFloat:
      return "a float";
    case Value::Kind::kString:
      return "a string";
    case Value::Kind::kTuple:
      return "a tuple";
    case Value::Kind::kList:
      return "a list";
    case Value::Kind::kDict:
      return "a dict";
    case Value::Kind::kGlobal:
      return "a global";
    case Value::Kind::kStorage:
      return "a storage";
    case Value::Kind::kTensor:
      return "a tensor";
    case Value::Kind::kMark:
      return "a mark";
  }
  return "?";
}

struct StorageClass {
  const char* name;
  StorageDType dtype;
};

constexpr StorageClass kStorageClasses[] = {
    {"FloatStorage", StorageDType::kF32},     {"HalfStorage", StorageDType::kF16},
    {"BFloat16Storage", StorageDType::kBF16}, {"DoubleStorage", StorageDType::kF64},
    {"LongStorage", StorageDType::kI64},      {"IntStorage", StorageDType::kI32},
    {"ShortStorage", StorageDType::kI16},     {"CharStorage", StorageDType::kI8},
    {"ByteStorage", StorageDType::kU8},       {"BoolStorage", StorageDType::kBool},
};

bool IsAllowedGlobal(const std::string& name) {
  if (name == "collections.OrderedDict" || name == "torch._utils._rebuild_tensor_v2" ||
      name == "torch._utils._rebuild_parameter") {
    return true;
  }
  for (const auto& c : kStorageClasses) {
    if (name == std::string("torch.") + c.name) return true;
  }
  return false;
}

class StateDictUnpickler {
 public:
  StateDictUnpickler(const std::string& path, const uint8_t* data, size_t size)
      : path_(path), data_(data), size_(size) {}

  std::vector<pytorch_bin::PickledTensor> Run() {
    for (;;) {
      const uint8_t op = Byte();
      switch (op) {
        case 0x80:  // PROTO
          Take(1);
          break;
        case 0x95:  // FRAME: its length is advisory
          Take(8);
          break;
        case '.':  // STOP
          return Result(Pop());
        case '(':
          stack_.push_back(Make(Value::Kind::kMark));
          break;
        case '}':
          stack_.push_back(Make(Value::Kind::kDict));
          break;
        case ']':
          stack_.push_back(Make(Value::Kind::kList));
          break;
        case ')':
          stack_.push_back(Make(Value::Kind::kTuple));
          break;
        case 't': {
          auto tuple = Make(Value::Kind::kTuple);
          tuple->items = PopMark();
          stack_.push_back(tuple);
          break;
        }
        case 0x85:
        case 0x86:
        case 0x87: {  // TUPLE1..3
          auto tuple = Make(Value::Kind::kTuple);
          tuple->items.resize(op - 0x84);
          for (size_t k = tuple->items.size(); k-- > 0;) tuple->items[k] = Pop();
          stack_.push_back(tuple);
          break;
        }
        case 'X':  // BINUNICODE
          PushString(ReadU32(Take(4)));
          break;
        case 0x8c:  // SHORT_BINUNICODE
          PushString(Byte());
          break;
        case 0x8d:  // BINUNICODE8
          PushString(ReadU64(Take(8)));
          break;
        case 'K':
          PushInt(Byte());
          break;
        case 'M':
          PushInt(ReadU16(Take(2)));
          break;
        case 'J':
          PushInt(static_cast<int32_t>(ReadU32(Take(4))));
          break;
        case 0x8a: {  // LONG1
          const size_t n = Byte();
          if (n > 8) Error("integer out of range");
          const uint8_t* p = Take(n);
          uint64_t value = 0;
          for (size_t k = n; k-- > 0;) value = (value << 8) | p[k];
          if (n > 0 && n < 8 && (p[n - 1] & 0x80)) value -= uint64_t{1} << (8 * n);
          PushInt(static_cast<int64_t>(value));
          break;
        }
        case 'G': {  // BINFLOAT (big-endian double): kept only as a value to reject
          Take(8);
          stack_.push_back(Make(Value::Kind::kFloat));
          break;
        }
        case 0x88:
        case 0x89: {  // NEWTRUE, NEWFALSE
          auto b = Make(Value::Kind::kBool);
          b->i = op == 0x88;
          stack_.push_back(b);
          break;
        }
        case 'N':
          stack_.push_back(Make(Value::Kind::kNone));
          break;
        case 'c': {  // GLOBAL
          std::string module = Line();
          std::string name = Line();
          PushGlobal(module + "." + name);
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          ValuePtr name = Pop();
          ValuePtr module = Pop();
          if (module->kind != Value::Kind::kString || name->kind != Value::Kind::kString) {
            Error("STACK_GLOBAL of " + std::string(Describe(*module)));
          }
          PushGlobal(module->s + "." + name->s);
          break;
        }
        case 'q':
          memo_[Byte()] = Top();
          break;
        case 'r':
          memo_[ReadU32(Take(4))] = Top();
          break;
        case 0x94:  // MEMOIZE
          memo_[memo_.size()] = Top();
          break;
        case 'h':
        case 'j': {  // BINGET, LONG_BINGET
          const uint32_t slot = op == 'h' ? Byte() : ReadU32(Take(4));
          auto it = memo_.find(slot);
          if (it == memo_.end()) Error("memo slot " + std::to_string(slot) + " is empty");
          stack_.push_back(it->second);
          break;
        }
        case 'Q':  // BINPERSID
          stack_.push_back(Storage(Pop()));
          break;
        case 'R': {  // REDUCE
          ValuePtr args = Pop();
          ValuePtr callable = Pop();
          stack_.push_back(Reduce(*callable, *args));
          break;
        }
        case 'b': {  // BUILD: only a dict's state (OrderedDict's _metadata), which is dropped
          ValuePtr state = Pop();
          if (Top()->kind != Value::Kind::kDict ||
              (state->kind != Value::Kind::kDict && state->kind != Value::Kind::kNone)) {
            Error("BUILD of " + std::string(Describe(*Top())));
          }
          break;
        }
        case 's': {  // SETITEM
          ValuePtr value = Pop();
          ValuePtr key = Pop();
          SetItems(*Top(), {key, value});
          break;
        }
        case 'u': {  // SETITEMS
          std::vector<ValuePtr> items = PopMark();
          SetItems(*Top(), items);
          break;
        }
        case 'a': {  // APPEND
          ValuePtr value = Pop();
          if (Top()->kind != Value::Kind::kList)
            Error("APPEND to " + std::string(Describe(*Top())));
          Top()->items.push_back(value);
          break;
        }
        case 'e': {  // APPENDS
          std::vector<ValuePtr> items = PopMark();
          if (Top()->kind != Value::Kind::kList)
            Error("APPENDS to " + std::string(Describe(*Top())));
          for (auto& item : items) Top()->items.push_back(item);
          break;
        }
        default: {
          char hex[8];
          std::snprintf(hex, sizeof(hex), "0x%02x", op);
          Error(std::string("unsupported opcode ") + hex + " at byte " + std::to_string(at_ - 1));
        }
      }
    }
  }

 private:
  ValuePtr Make(Value::Kind kind) {
    arena_.push_back(std::make_unique<Value>());
    arena_.back()->kind = kind;
    return arena_.back().get();
  }

  [[noreturn]] void Error(const std::string& message) const { Fail(path_, "data.pkl: " + message); }

  const uint8_t* Take(size_t n) {
    if (n > size_ - at_) Error("ends early at byte " + std::to_string(at_));
    const uint8_t* p = data_ + at_;
    at_ += n;
    return p;
  }
  uint8_t Byte() { return *Take(1); }

  std::string Line() {
    const void* end = std::memchr(data_ + at_, '\n', size_ - at_);
    if (end == nullptr) Error("unterminated GLOBAL at byte " + std::to_string(at_));
    const size_t n = static_cast<const uint8_t*>(end) - (data_ + at_);
    std::string line(reinterpret_cast<const char*>(Take(n)), n);
    Take(1);
    return line;
  }

  void PushString(uint64_t n) {
    if (n > size_ - at_) Error("ends early at byte " + std::to_string(at_));
    auto s = Make(Value::Kind::kString);
    s->s.assign(reinterpret_cast<const char*>(Take(n)), n);
    stack_.push_back(s);
  }

  void PushInt(int64_t value) {
    auto v = Make(Value::Kind::kInt);
    v->i = value;
    stack_.push_back(v);
  }

  void PushGlobal(const std::string& name) {
    if (!IsAllowedGlobal(name)) {
      Error("refuses the global " + name + " (only tensors of a state_dict are read)");
    }
    auto g = Make(Value::Kind::kGlobal);
    g->s = name;
    stack_.push_back(g);
  }

  ValuePtr Pop() {
    if (stack_.empty() || stack_.back()->kind == Value::Kind::kMark) {
      Error("stack underflow at byte " + std::to_string(at_));
    }
    ValuePtr v = stack_.back();
    stack_.pop_back();
    return v;
  }

  const ValuePtr& Top() {
    if (stack_.empty() || stack_.back()->kind == Value::Kind::kMark) {
      Error("stack underflow at byte " + std::to_string(at_));
    }
    return stack_.back();
  }

  std::vector<ValuePtr> PopMark() {
    size_t k = stack_.size();
    while (k > 0 && stack_[k - 1]->kind != Value::Kind::kMark) --k;
    if (k == 0) Error("no MARK before byte " + std::to_string(at_));
    std::vector<ValuePtr> items(stack_.begin() + static_cast<std::ptrdiff_t>(k), stack_.end());
    stack_.resize(k - 1);
    return items;
  }

  void SetItems(Value& dict, const std::vector<ValuePtr>& items) {
    if (dict.kind != Value::Kind::kDict) Error("SETITEMS on " + std::string(Describe(dict)));
    if (items.size() % 2 != 0) Error("SETITEMS with an odd number of items");
    for (size_t k = 0; k < items.size(); k += 2) dict.entries.emplace_back(items[k], items[k + 1]);
  }

  int64_t Int(const Value& v, const char* what) const {
    if (v.kind != Value::Kind::kInt)
      Error(std::string(what) + " is " + Describe(v) + ", not an int");
    return v.i;
  }

  std::vector<int64_t> Ints(const Value& v, const char* what) const {
    if (v.kind != Value::Kind::kTuple)
      Error(std::string(what) + " is " + Describe(v) + ", not a tuple");
    std::vector<int64_t> out;
    for (const auto& item : v.items) out.push_back(Int(*item, what));
    return out;
  }

  // ('storage', torch.<T>Storage, key, location, numel)
  ValuePtr Storage(const ValuePtr& pid) {
    const auto& a = pid->items;
    if (pid->kind != Value::Kind::kTuple || a.size() < 5 || a[0]->kind != Value::Kind::kString ||
        a[0]->s != "storage" || a[1]->kind != Value::Kind::kGlobal ||
        a[2]->kind != Value::Kind::kString) {
      Error("unexpected persistent id");
    }
    auto storage = Make(Value::Kind::kStorage);
    bool known = false;
    for (const auto& c : kStorageClasses) {
      if (a[1]->s == std::string("torch.") + c.name) {
        storage->dtype = c.dtype;
        known = true;
      }
    }
    if (!known) Error("unsupported storage type " + a[1]->s);
    storage->s = a[2]->s;
    storage->i = Int(*a[4], "storage size");
    if (storage->i < 0) Error("negative storage size");
    return storage;
  }

  ValuePtr Reduce(const Value& callable, const Value& args) {
    if (callable.kind != Value::Kind::kGlobal || args.kind != Value::Kind::kTuple) {
      Error("REDUCE of " + std::string(Describe(callable)));
    }
    const auto& a = args.items;
    if (callable.s == "collections.OrderedDict") {
      if (!a.empty()) Error("collections.OrderedDict called with arguments");
      return Make(Value::Kind::kDict);
    }
    if (callable.s == "torch._utils._rebuild_tensor_v2") {
      if (a.size() < 4 || a[0]->kind != Value::Kind::kStorage) {
        Error("_rebuild_tensor_v2 without a storage");
      }
      auto tensor = Make(Value::Kind::kTensor);
      tensor->items = {a[0]};
      tensor->i = Int(*a[1], "storage offset");
      tensor->shape = Ints(*a[2], "tensor size");
      tensor->stride = Ints(*a[3], "tensor stride");
      if (tensor->shape.size() != tensor->stride.size())
        Error("tensor size and stride differ in rank");
      return tensor;
    }
    if (callable.s == "torch._utils._rebuild_parameter") {
      if (a.empty() || a[0]->kind != Value::Kind::kTensor)
        Error("_rebuild_parameter without a tensor");
      return a[0];
    }
    Error(callable.s + " cannot be called");
  }

  std::vector<pytorch_bin::PickledTensor> Result(const ValuePtr& top) {
    if (top->kind != Value::Kind::kDict) {
      Error(std::string("top level is ") + Describe(*top) + ", not a dict of tensors");
    }
    std::vector<pytorch_bin::PickledTensor> out;
    std::unordered_map<std::string, size_t> index;
    for (const auto& [key, value] : top->entries) {
      if (key->kind != Value::Kind::kString) {
        Error(std::string("a key is ") + Describe(*key) + ", not a string");
      }
      if (value->kind != Value::Kind::kTensor) {
        Fail(path_, "tensor '" + key->s + "': value is " + Describe(*value) +
                        ", not a tensor (only tensors are read)");
      }
      const Value& storage = *value->items[0];
      pytorch_bin::PickledTensor t;
      t.name = key->s;
      t.dtype = storage.dtype;
      t.storage_key = storage.s;
      t.storage_numel = storage.i;
      t.storage_offset = value->i;
      t.shape = value->shape;
      t.stride = value->stride;
      auto [it, inserted] = index.emplace(t.name, out.size());
      if (inserted) {
        out.push_back(std::move(t));
      } else {
        out[it->second] = std::move(t);  // a repeated key: the last wins, as in Python
      }
    }
    return out;
  }

  const std::string& path_;
  const uint8_t* data_;
  size_t size_;
  size_t at_ = 0;
  std::vector<std::unique_ptr<Value>> arena_;
  std::vector<ValuePtr> stack_;
  std::unordered_map<uint32_t, ValuePtr> memo_;
};

// ---------------------------------------------------------------------------------------------------
// Zip records

struct StoredRecord {
  uint16_t method = 0;
  uint64_t size = 0;
};

// The central directory's record sizes and methods, which PyTorchStreamReader does not expose
// (local headers may hold zero sizes, with a data descriptor after the data). The reader has
// already validated the archive; this only reads what it needs, every read bounds-checked.
std::unordered_map<std::string, StoredRecord> CentralDirectory(const std::string& path,
                                                               const uint8_t* f, size_t n) {
  auto corrupt = [&](const std::string& what) {
    Fail(path, "truncated or corrupt zip archive: " + what);
  };
  if (n < 22) corrupt("too short");
  const size_t lowest = n > 22 + 0xffff ? n - 22 - 0xffff : 0;
  size_t eocd = n;
  for (size_t p = n - 22 + 1; p-- > lowest;) {
    if (ReadU32(f + p) == 0x06054b50) {
      eocd = p;
      break;
    }
  }
  if (eocd == n) corrupt("no end-of-central-directory record");
  uint64_t count = ReadU16(f + eocd + 10);
  uint64_t cd_size = ReadU32(f + eocd + 12);
  uint64_t cd_offset = ReadU32(f + eocd + 16);
  if (count == 0xffff || cd_size == 0xffffffffu || cd_offset == 0xffffffffu) {
    if (eocd < 20 || ReadU32(f + eocd - 20) != 0x07064b50) corrupt("no zip64 locator");
    const uint64_t at = ReadU64(f + eocd - 20 + 8);
    if (at > eocd || eocd - at < 56 || ReadU32(f + at) != 0x06064b50)
      corrupt("no zip64 end record");
    count = ReadU64(f + at + 32);
    cd_size = ReadU64(f + at + 40);
    cd_offset = ReadU64(f + at + 48);
  }
  if (cd_offset > eocd || cd_size > eocd - cd_offset) corrupt("central directory out of bounds");
  std::unordered_map<std::string, StoredRecord> records;
  const uint8_t* cd = f + cd_offset;
  uint64_t at = 0;
  for (uint64_t k = 0; k < count; ++k) {
    if (cd_size - at < 46 || ReadU32(cd + at) != 0x02014b50) corrupt("damaged central directory");
    const uint16_t name_length = ReadU16(cd + at + 28);
    const uint16_t extra_length = ReadU16(cd + at + 30);
    const uint16_t comment_length = ReadU16(cd + at + 32);
    if (cd_size - at < 46u + name_length + extra_length + comment_length) {
      corrupt("damaged central directory");
    }
    StoredRecord record;
    record.method = ReadU16(cd + at + 10);
    uint64_t compressed = ReadU32(cd + at + 20);
    record.size = ReadU32(cd + at + 24);
    const uint8_t* extra = cd + at + 46 + name_length;
    for (size_t e = 0; e + 4 <= extra_length;) {
      const uint16_t id = ReadU16(extra + e);
      const uint16_t length = ReadU16(extra + e + 2);
      if (id == 0x0001) {  // zip64: the fields that overflowed, in this order
        size_t field = e + 4;
        const size_t end = std::min<size_t>(e + 4 + length, extra_length);
        if (record.size == 0xffffffffu && field + 8 <= end) {
          record.size = ReadU64(extra + field);
          field += 8;
        }
        if (compressed == 0xffffffffu && field + 8 <= end) compressed = ReadU64(extra + field);
      }
      e += 4 + length;
    }
    if (record.method == 0 && compressed != record.size) corrupt("a stored record has two sizes");
    records.emplace(std::string(reinterpret_cast<const char*>(cd + at + 46), name_length), record);
    at += 46u + name_length + extra_length + comment_length;
  }
  return records;
}

std::string ShapeString(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t k = 0; k < v.size(); ++k) s += (k ? ", " : "") + std::to_string(v[k]);
  return s + "]";
}

}  // namespace

namespace pytorch_bin {

std::vector<PickledTensor> ParseStateDictPickle(const std::string& path, const uint8_t* data,
                                                size_t size) {
  return StateDictUnpickler(path, data, size).Run();
}

}  // namespace pytorch_bin

PytorchBinFile::PytorchBinFile(const std::string& path) : map_(std::make_unique<MappedFile>(path)) {
  const uint8_t* file = map_->data();
  const size_t file_size = map_->size();
  if (file_size < 4 || ReadU32(file) != kLocalHeaderSignature) {
    if (file_size >= 2 && file[0] == 0x80) {
      Fail(path,
           "is in the legacy torch.save format (PyTorch < 1.6, not a zip archive), which is not "
           "read; convert it with PyTorch: torch.save(torch.load(path, weights_only=True), path) "
           "rewrites it in the zip format, or save the model with save_pretrained(..., "
           "safe_serialization=True) for safetensors");
    }
    Fail(path, "is not a zip archive (torch.save format expected)");
  }

  std::vector<pytorch_bin::PickledTensor> pickled;
  std::vector<uint64_t> record_offsets;
  try {
    caffe2::serialize::PyTorchStreamReader reader(path);
    if (!reader.hasRecord("data.pkl")) Fail(path, "has no data.pkl record: not a torch.save file");
    auto [pickle, pickle_size] = reader.getRecord("data.pkl");
    pickled = pytorch_bin::ParseStateDictPickle(path, static_cast<const uint8_t*>(pickle.get()),
                                                pickle_size);
    for (const auto& t : pickled) {
      const std::string record = "data/" + t.storage_key;
      if (!reader.hasRecord(record)) {
        Fail(path, "tensor '" + t.name + "': storage record " + record + " is missing");
      }
      record_offsets.push_back(reader.getRecordOffset(record));
    }
  } catch (const c10::Error& e) {
    Fail(path, "truncated or corrupt zip archive (" + Brief(e) + ")");
  }

  const auto records = CentralDirectory(path, file, file_size);
  std::string prefix;  // "<archive>/", the folder every record is in
  for (const auto& [name, record] : records) {
    if (name.size() > 9 && name.compare(name.size() - 9, 9, "/data.pkl") == 0) {
      prefix = name.substr(0, name.size() - 8);
    }
  }
  tensors_.reserve(pickled.size());
  for (size_t k = 0; k < pickled.size(); ++k) {
    const auto& t = pickled[k];
    auto fail = [&](const std::string& message) {
      Fail(path, "tensor '" + t.name + "': " + message);
    };
    const size_t element = StorageDTypeSize(t.dtype);
    auto found = records.find(prefix + "data/" + t.storage_key);
    if (found == records.end()) fail("storage record data/" + t.storage_key + " is missing");
    const StoredRecord& stored = found->second;
    if (stored.method != 0) {
      fail("storage data/" + t.storage_key + " is compressed (method " +
           std::to_string(stored.method) + "); torch.save stores storages uncompressed");
    }
    if (stored.size < static_cast<uint64_t>(t.storage_numel) * element ||
        record_offsets[k] + stored.size > file_size) {
      fail("storage data/" + t.storage_key + " holds " + std::to_string(stored.size) +
           " bytes, fewer than its " + std::to_string(t.storage_numel) + " elements need");
    }
    int64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0) fail("negative size in " + ShapeString(t.shape));
      numel *= d;
    }
    int64_t expected = 1;
    for (size_t d = t.shape.size(); numel > 1 && d-- > 0;) {
      if (t.shape[d] > 1 && t.stride[d] != expected) {
        fail("tensor is not contiguous (stride " + ShapeString(t.stride) + " for shape " +
             ShapeString(t.shape) + ")");
      }
      expected *= t.shape[d];
    }
    if (t.storage_offset < 0 || t.storage_offset + numel > t.storage_numel) {
      fail("elements [" + std::to_string(t.storage_offset) + ", " +
           std::to_string(t.storage_offset + numel) + ") lie outside storage " + t.storage_key +
           " of " + std::to_string(t.storage_numel));
    }
    TensorEntry entry;
    entry.name = t.name;
    entry.dtype = t.dtype;
    entry.shape = t.shape;
    entry.offset = record_offsets[k] + static_cast<uint64_t>(t.storage_offset) * element;
    entry.nbytes = static_cast<uint64_t>(numel) * element;
    by_name_.emplace(entry.name, tensors_.size());
    tensors_.push_back(std::move(entry));
  }
}

const TensorEntry* PytorchBinFile::Find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace qwen3

// CPU collectives between the rank threads of one process. All-reduce is a reduce-scatter into a
// shared buffer followed by an all-gather copy, with ranks added in rank order so every rank gets
// bit-identical sums.
#include <ATen/ATen.h>

#include <limits>

#include "common/error.h"
#include "common/sync.h"
#include "parallel/communicator.h"

namespace qwen3 {

namespace {

class SoloCommunicator final : public Communicator {
 public:
  int rank() const noexcept override { return 0; }
  int world_size() const noexcept override { return 1; }
  void AllReduceSum(at::Tensor& /*tensor*/) override {}
  at::Tensor AllReduceSumAsFloat(const at::Tensor& partial) override {
    return partial.to(at::kFloat);
  }
  void Barrier() override {}
  // Nothing to synchronise with: a graph may hold any forward.
  int64_t capturable_bytes() const noexcept override { return std::numeric_limits<int64_t>::max(); }
};

class SoloGroup final : public CommunicatorGroup {
 public:
  int world_size() const noexcept override { return 1; }
  Communicator& rank(int /*r*/) override { return comm_; }
  void Abort() noexcept override {}
  bool aborted() const noexcept override { return false; }
  void Rebuild() override {}

 private:
  SoloCommunicator comm_;
};

class InProcessGroup;

class InProcessCommunicator final : public Communicator {
 public:
  InProcessCommunicator(InProcessGroup* group, int rank) : group_(group), rank_(rank) {}
  int rank() const noexcept override { return rank_; }
  int world_size() const noexcept override;
  void AllReduceSum(at::Tensor& tensor) override;
  void Barrier() override;

 private:
  InProcessGroup* group_;
  int rank_;
};

class InProcessGroup final : public CommunicatorGroup {
 public:
  explicit InProcessGroup(int world) : world_(world), barrier_(world), posted_(world) {
    for (int r = 0; r < world; ++r) comms_.emplace_back(this, r);
  }

  int world_size() const noexcept override { return world_; }
  Communicator& rank(int r) override { return comms_.at(static_cast<size_t>(r)); }
  void Abort() noexcept override { barrier_.Abort(); }
  bool aborted() const noexcept override { return barrier_.aborted(); }
  void Rebuild() override {
    for (auto& t : posted_) t.reset();
    scratch_.reset();
    barrier_.Reset();
  }

 private:
  friend class InProcessCommunicator;
  const int world_;
  qwen3::Barrier barrier_;  // qualified: InProcessCommunicator has a Barrier() method
  std::vector<InProcessCommunicator> comms_;
  // Written by each rank for its own slot (and rank 0 for scratch_) before the first barrier of a
  // collective, read by all after it.
  std::vector<at::Tensor> posted_;
  at::Tensor scratch_;
};

int InProcessCommunicator::world_size() const noexcept { return group_->world_; }

void InProcessCommunicator::AllReduceSum(at::Tensor& tensor) {
  TORCH_CHECK(tensor.is_contiguous() && tensor.device().is_cpu(),
              "in-process all-reduce needs a contiguous CPU tensor");
  InProcessGroup& g = *group_;
  at::Tensor flat = tensor.view({-1});
  g.posted_[static_cast<size_t>(rank_)] = flat;
  if (rank_ == 0) g.scratch_ = at::empty_like(flat);
  g.barrier_.ArriveAndWait();  // every input posted, scratch allocated

  const int64_t numel = flat.numel();
  const int64_t per_rank = (numel + g.world_ - 1) / g.world_;
  const int64_t begin = std::min<int64_t>(numel, per_rank * rank_);
  const int64_t length = std::min<int64_t>(numel - begin, per_rank);
  if (length > 0) {
    at::Tensor out = g.scratch_.narrow(0, begin, length);
    out.copy_(g.posted_[0].narrow(0, begin, length));
    for (int r = 1; r < g.world_; ++r)
      out.add_(g.posted_[static_cast<size_t>(r)].narrow(0, begin, length));
  }
  g.barrier_.ArriveAndWait();  // every slice reduced

  flat.copy_(g.scratch_);
  g.barrier_.ArriveAndWait();  // everyone copied out; inputs and scratch may be reused
  g.posted_[static_cast<size_t>(rank_)].reset();
}

void InProcessCommunicator::Barrier() { group_->barrier_.ArriveAndWait(); }

}  // namespace

std::unique_ptr<CommunicatorGroup> MakeSoloGroup() { return std::make_unique<SoloGroup>(); }

std::unique_ptr<CommunicatorGroup> MakeInProcessGroup(int world_size) {
  if (world_size == 1) return MakeSoloGroup();
  return std::make_unique<InProcessGroup>(world_size);
}

}  // namespace qwen3

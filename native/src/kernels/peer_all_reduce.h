// A one-shot all-reduce over NVLink (or PCIe peer access) for the small messages of a short
// query, for the GPUs of one tensor-parallel group driven by one process. NCCL spends ~10 us on
// each of a forward's 72 all-reduces at these sizes; this kernel is one launch that copies the
// rank's partial sums into its staging buffer, meets its peers on flags in each other's memory, and
// sums every rank's buffer straight over peer loads, in fp32 and in rank order, so every rank gets
// the same bits. It also takes the bf16/fp16 partials and writes fp32, which saves the cast kernel.
//
// The fused all-reduce + norm (a short query's path) has no flags at all: each rank posts its rows
// into a mailbox in every peer's memory and each reader waits for the words themselves to arrive
// (a mailbox word is "empty" until then), so a call costs one one-way trip over the link instead
// of a flag round and a remote read.
//
// The kernels are safe to capture in a CUDA graph: the flag values (epochs) live in device memory
// and each launch advances them itself. It never waits forever: it gives up when the host sets the
// group's abort word (a peer failed), or after timeout_ns (default kPeerTimeoutNs), when it sets
// the timed-out word, which then releases every later launch at once, as the abort word does
// (otherwise each launch left in a forward would wait out a timeout of its own). Either way the
// result is undefined and the epochs and mailboxes are out of step, so the host resets the signals
// (zeroes them) and empties the mailboxes before the next use. Like fused_kernels.h this header is
// plain C++.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/fused_kernels.h"

namespace qwen3::kernels {

constexpr int kPeerMaxRanks = 8;
// Every launch uses this many blocks, so each block's epoch counter and its slice of the message
// stay the same from launch to launch (what makes two staging halves enough; see the .cu file).
constexpr int kPeerBlocks = 24;
// The fused all-reduce + norm takes at most this many rows: a block sums one row at a time, so
// past two rows per block the plain kernel (all blocks on every row) and a separate norm are
// faster.
constexpr int64_t kPeerFusedMaxRows = 2 * kPeerBlocks;
// The fused kernel's mailboxes per rank, used in turn by epoch; each has a slot per sender of
// mailbox_slot_bytes.
constexpr int kPeerMailboxes = 3;
constexpr uint64_t kPeerTimeoutNs = uint64_t{30} * 1000 * 1000 * 1000;

// One per rank, in that rank's device memory, zeroed before first use.
// Epochs count launches since the last reset and are 64-bit, so they never wrap: a 32-bit count
// would wrap after ~60M forwards of the 4B model (72 launches each), where 2^32 is no multiple of
// the mailbox count, and the flags, which only the plain kernel stores, would fall 2^31 behind the
// epochs after a long run of fused launches and then compare as ahead.
struct PeerSignals {
  uint64_t flags[kPeerBlocks][kPeerMaxRanks];  // flags[b][r]: rank r's block b reached this epoch
  uint64_t epochs[kPeerBlocks];                // the last epoch of this rank's block b
};

struct PeerGroup {
  int rank = 0;
  int world = 0;
  void* staging[kPeerMaxRanks] = {};  // each rank's staging buffer: two halves of half_bytes
  int64_t half_bytes = 0;
  PeerSignals* signals[kPeerMaxRanks] = {};
  // Each rank's mailboxes: kPeerMailboxes x world slots of mailbox_slot_bytes, empty (see
  // EmptyPeerMailboxes) when no launch is in flight. Null: the fused kernel is not available.
  void* mailbox[kPeerMaxRanks] = {};
  int64_t mailbox_slot_bytes = 0;
  const volatile int32_t* abort_word = nullptr;  // host-mapped; non-zero: stop waiting
  volatile int32_t* timed_out_word = nullptr;    // host-mapped; set to 1 on a timeout
  uint64_t timeout_ns = kPeerTimeoutNs;          // how long a block waits for a peer
};

// Whether a message of `count` elements of `type` at `input` can go through the kernel: the
// count is a multiple of 16 bytes, the input 16-byte aligned, and it fits one staging half.
bool PeerAllReduceFits(const PeerGroup& group, const void* input, ElementType type, int64_t count);

// out[i] = sum over ranks r (in order 0..world-1) of rank r's input[i], in fp32. Every rank of the
// group must launch it with the same count and type, in the same order as its other all-reduces.
// `out` may alias `input` when the type is fp32.
cudaError_t PeerAllReduceToFloat(const PeerGroup& group, const void* input, ElementType type,
                                 float* out, int64_t count, cudaStream_t stream);

// Whether PeerAllReduceAddRmsNorm takes these: at most kPeerFusedMaxRows rows, the message fits
// a staging half (PeerAllReduceFits) and a mailbox slot, a row is a whole number of 16-byte
// vectors, and residual and weight are 16-byte aligned.
bool PeerAllReduceAddRmsNormFits(const PeerGroup& group, const void* input, ElementType type,
                                 const float* residual, const float* weight, int64_t rows,
                                 int64_t width);

// The all-reduce and the AddRmsNorm after it (fused_kernels.h) in one launch: residual [rows,
// width] fp32 += the sum over ranks of input [rows, width] (in fp32, in rank order), then out =
// RMSNorm(residual) * weight (fp32 [width]), rounded once to out_type. Every rank ends with the
// same residual and out. Same launch rules as PeerAllReduceToFloat, and the two may interleave on
// a stream. cudaErrorInvalidValue when !PeerAllReduceAddRmsNormFits.
cudaError_t PeerAllReduceAddRmsNorm(const PeerGroup& group, const void* input, ElementType type,
                                    float* residual, const float* weight, float eps, void* out,
                                    ElementType out_type, int64_t rows, int64_t width,
                                    cudaStream_t stream);

// Fills `bytes` (a multiple of 4) of mailboxes with the empty word.
cudaError_t EmptyPeerMailboxes(void* mailboxes, int64_t bytes, cudaStream_t stream);

}  // namespace qwen3::kernels

// See peer_all_reduce.h. Protocol of one launch, for block b of rank r at epoch e (its previous
// epoch + 1; the staging half is e & 1):
//   1. copy this block's slice of the input into r's staging half (16-byte vectors);
//   2. __syncthreads, then thread p stores e into flags[b][r] of rank p (a release at system scope)
//      and waits until its own flags[b][p] reaches e (an acquire), i.e. until rank p's block b has
//      staged the same slice;
//   3. __syncthreads, then sum the slice over every rank's staging half, in rank order, in fp32.
// Why two halves suffice without a second barrier: rank r writes half (e & 1) again at epoch e + 2,
// after its barrier of epoch e + 1, which every peer's block b joined from its launch e + 1; a
// stream runs its launches in order, so every peer's launch e (all its reads of that half) had
// finished. This needs every launch to use the same blocks, hence the fixed grid. Launch e + 1 may
// instead be PeerAllReduceAddRmsNormKernel, which has no barrier and stages nothing (it posts into
// mailboxes, below): its block 0 still waits for row 0 from every peer's launch e + 1, which each
// peer posted only after its launch e had finished, so the same holds for the whole launch. The two
// kernels share the blocks' epochs, which every launch of either advances.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <type_traits>

#include "kernels/element_math.cuh"
#include "kernels/peer_all_reduce.h"

namespace qwen3::kernels {
namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kVectorBytes = 16;
// How many spins between two looks at the host-mapped abort word and the clock.
constexpr uint32_t kSpinsPerCheck = 64;
// A mailbox wait that does not watch the abort word (see WaitForMail) still looks at it at every
// kQuietChecks-th check.
constexpr uint32_t kQuietChecks = 256;

__device__ __forceinline__ void StoreRelease(uint64_t* address, uint64_t value) {
  asm volatile("st.release.sys.global.u64 [%0], %1;" ::"l"(address), "l"(value) : "memory");
}

__device__ __forceinline__ uint64_t LoadAcquire(const uint64_t* address) {
  uint64_t value;
  asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(value) : "l"(address) : "memory");
  return value;
}

__device__ __forceinline__ uint64_t GlobalTimerNs() {
  uint64_t ns;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(ns));
  return ns;
}

// Whether the host released the group's waits: an abort (a peer failed) or an earlier timeout. The
// second matters as much as the first: once one launch timed out, every later launch of the same
// forward would otherwise wait out its own timeout too (72 of them for the 4B model).
__device__ __forceinline__ bool Released(const PeerGroup& group) {
  return *group.abort_word != 0 || *group.timed_out_word != 0;
}

// Adds the 16 bytes in `v` (holding kVectorBytes / sizeof(T) values of T) to acc.
template <typename T>
__device__ __forceinline__ void Accumulate(const uint4& v, float* acc) {
  if constexpr (std::is_same_v<T, float>) {
    acc[0] += __uint_as_float(v.x);
    acc[1] += __uint_as_float(v.y);
    acc[2] += __uint_as_float(v.z);
    acc[3] += __uint_as_float(v.w);
  } else {
    const T* values = reinterpret_cast<const T*>(&v);
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[i] += ToFloat(values[i]);
  }
}

// acc += vector `index` of every rank's staging buffer, in rank order. Every load is issued before
// the first add, so a thread waits for one peer load, not one per rank in turn.
template <typename T>
__device__ __forceinline__ void SumOverRanks(const PeerGroup& group, int64_t index, float* acc) {
  uint4 v[kPeerMaxRanks];
#pragma unroll
  for (int p = 0; p < kPeerMaxRanks; ++p) {
    if (p < group.world) v[p] = __ldcg(static_cast<const uint4*>(group.staging[p]) + index);
  }
#pragma unroll
  for (int p = 0; p < kPeerMaxRanks; ++p) {
    if (p < group.world) Accumulate<T>(v[p], acc);
  }
}

// Block b's side of the meeting of epoch `epoch`: thread p stores the epoch into flags[b][rank] of
// rank p (a release at system scope) and waits until rank p's block b stored it into ours (an
// acquire), or until the group is released or the timeout passes (then it sets the timed-out word).
// Every thread of the block calls it; it returns after a __syncthreads.
__device__ __forceinline__ void MeetPeers(const PeerGroup& group, PeerSignals* self, int b,
                                          uint64_t epoch) {
  __syncthreads();
  if (threadIdx.x < static_cast<unsigned>(group.world)) {
    const int peer = static_cast<int>(threadIdx.x);
    __threadfence_system();
    StoreRelease(&group.signals[peer]->flags[b][group.rank], epoch);
    const uint64_t* flag = &self->flags[b][peer];
    uint64_t started = 0;
    uint32_t spins = 0;
    while (LoadAcquire(flag) < epoch) {
      if (++spins % kSpinsPerCheck != 0) continue;
      if (Released(group)) break;
      const uint64_t now = GlobalTimerNs();
      if (started == 0) {
        started = now;
      } else if (now - started > group.timeout_ns) {
        *group.timed_out_word = 1;
        break;
      }
    }
  }
  __syncthreads();
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    PeerAllReduceKernel(PeerGroup group, const T* input, float* out, int64_t vectors) {
  constexpr int kPerVector = kVectorBytes / static_cast<int>(sizeof(T));
  const int b = static_cast<int>(blockIdx.x);
  PeerSignals* self = group.signals[group.rank];
  const uint64_t epoch = self->epochs[b] + 1;
  const int64_t half_vectors = group.half_bytes / kVectorBytes;
  const int64_t offset = static_cast<int64_t>(epoch & 1u) * half_vectors;
  const int64_t first = static_cast<int64_t>(b) * kThreads + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(kPeerBlocks) * kThreads;

  // 1. Stage this block's slice.
  uint4* mine = static_cast<uint4*>(group.staging[group.rank]) + offset;
  const uint4* in = reinterpret_cast<const uint4*>(input);
  for (int64_t i = first; i < vectors; i += stride) mine[i] = in[i];

  // 2. Meet every peer's block b.
  MeetPeers(group, self, b, epoch);

  // 3. Sum the slice over the ranks, in rank order (the same bits on every rank).
  for (int64_t i = first; i < vectors; i += stride) {
    float acc[kPerVector] = {};
    SumOverRanks<T>(group, offset + i, acc);
    float4* o = reinterpret_cast<float4*>(out + i * kPerVector);
#pragma unroll
    for (int k = 0; k < kPerVector / 4; ++k) {
      o[k] = make_float4(acc[4 * k], acc[4 * k + 1], acc[4 * k + 2], acc[4 * k + 3]);
    }
  }
  if (threadIdx.x == 0) self->epochs[b] = epoch;
}

// Sum over the block of 512 threads; every thread gets it. Safe to call once per row in a loop.
__device__ float BlockSum(float v) {
  __shared__ float partial[kWarps];
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  const int lane = static_cast<int>(threadIdx.x) & 31;
  const int warp = static_cast<int>(threadIdx.x) >> 5;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  float total = 0.0f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) total += partial[w];
  __syncthreads();  // every thread has read partial before the next call writes it
  return total;
}

// The mailboxes' "empty" word: two fp16/bf16 negative zeros, or one fp32 denormal (-4.6e-41). A
// sender never posts it (NoEmptyWords), so a receiver knows a word has arrived when it differs.
constexpr uint32_t kEmptyWord = 0x80008000u;

// `v` with every word that would read as empty changed: for 16-bit types each -0.0 becomes +0.0
// (the same in any sum that starts from +0.0, as every sum here does); for fp32 the one denormal
// 0x80008000 becomes -0.0.
template <typename T>
__device__ __forceinline__ uint4 NoEmptyWords(uint4 v) {
  uint32_t* w = reinterpret_cast<uint32_t*>(&v);
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    if constexpr (sizeof(T) == 4) {
      if (w[k] == kEmptyWord) w[k] = 0x80000000u;
    } else {
      if ((w[k] & 0xffffu) == 0x8000u) w[k] &= 0xffff0000u;
      if ((w[k] >> 16) == 0x8000u) w[k] &= 0x0000ffffu;
    }
  }
  return v;
}

__device__ __forceinline__ bool HasEmptyWord(const uint4& v) {
  return v.x == kEmptyWord || v.y == kEmptyWord || v.z == kEmptyWord || v.w == kEmptyWord;
}

__device__ __forceinline__ void StoreVolatile(uint4* address, const uint4& v) {
  asm volatile("st.volatile.global.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(address), "r"(v.x),
               "r"(v.y), "r"(v.z), "r"(v.w)
               : "memory");
}

__device__ __forceinline__ uint4 LoadVolatile(const uint4* address) {
  uint4 v;
  asm volatile("ld.volatile.global.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(address)
               : "memory");
  return v;
}

// Waits until no word of the mailbox vector at `address` is empty and returns it. Gives up (and
// returns what is there) after the timeout, or when the group is released; it records that in
// *gave_up so the thread's later waits in the same launch return at once. Only the thread that
// waits for a row's first vector (watch_abort) looks at the abort word at every check: it lives in
// host memory, and hundreds of threads reading it over PCIe while they wait slow each wait down
// enough to make the peer wait in turn (measured: 150 us a call instead of a few, on every call of
// a forward). The others wait for vectors behind one that already came, which takes a few spins,
// so they look only every kQuietChecks-th check (~16k spins): enough that a peer which faulted in
// the middle of a row does not hold them until the timeout after an abort.
__device__ __forceinline__ uint4 WaitForMail(const PeerGroup& group, const uint4* address,
                                             bool watch_abort, bool* gave_up) {
  uint4 v = LoadVolatile(address);
  uint64_t started = 0;
  uint32_t spins = 0;
  while (HasEmptyWord(v) && !*gave_up) {
    if (++spins % kSpinsPerCheck == 0) {
      if ((watch_abort || spins % (kSpinsPerCheck * kQuietChecks) == 0) && Released(group)) {
        *gave_up = true;
        break;
      }
      const uint64_t now = GlobalTimerNs();
      if (started == 0) {
        started = now;
      } else if (now - started > group.timeout_ns) {
        *group.timed_out_word = 1;
        *gave_up = true;
        break;
      }
    }
    v = LoadVolatile(address);
  }
  return v;
}

// residual += the sum over ranks of input, then out = RMSNorm(residual) * weight. No flags: block b
// of rank r posts its rows (b, b + kPeerBlocks, ...) straight into slot r of the epoch's mailbox in
// every peer's memory (remote stores, which do not wait for a round trip), then reads each peer's
// slot in its own mailbox as the words arrive, and empties it again. The whole block takes one row
// at a time (a thread per 16-byte vector). Why no barrier is needed: a peer posts into mailbox m
// of rank r again kPeerMailboxes launches later, after finishing the launch that follows this one;
// that launch waited for rank r's posts of the same launch, which rank r made only once this
// launch (and so its emptying) had finished on its stream. Two mailboxes would be enough by that
// argument; the third keeps a launch's emptying and the next launch but one's posts apart in
// memory as well as in time. The sum runs in rank order and the residual update and norm in
// AddRmsNormKernel's order, except the sum of squares, so every rank writes the same bits.
template <typename T, typename TOut>
__global__ void __launch_bounds__(kThreads)
    PeerAllReduceAddRmsNormKernel(PeerGroup group, const T* input, float* residual,
                                  const float* weight, float eps, TOut* out, int64_t rows,
                                  int64_t width) {
  constexpr int kPerVector = kVectorBytes / static_cast<int>(sizeof(T));
  const int b = static_cast<int>(blockIdx.x);
  PeerSignals* self = group.signals[group.rank];
  const uint64_t epoch = self->epochs[b] + 1;
  const int64_t slot_vectors = group.mailbox_slot_bytes / kVectorBytes;
  // The first slot of this epoch's mailbox; a mailbox has a slot per sender.
  const int64_t box = static_cast<int64_t>(epoch % kPeerMailboxes) * group.world * slot_vectors;
  const int64_t row_vectors = width / kPerVector;
  const uint4* in = reinterpret_cast<const uint4*>(input);

  // 1. Post this block's rows into every peer's mailbox.
  for (int64_t row = b; row < rows; row += kPeerBlocks) {
    for (int64_t i = threadIdx.x; i < row_vectors; i += kThreads) {
      const int64_t at = box + group.rank * slot_vectors + row * row_vectors + i;
      const uint4 v = NoEmptyWords<T>(in[row * row_vectors + i]);
      for (int p = 0; p < group.world; ++p) {
        if (p != group.rank) StoreVolatile(static_cast<uint4*>(group.mailbox[p]) + at, v);
      }
    }
  }

  // 2. Thread 0 waits for the first vector of each of the block's rows from every peer (watching
  // the abort word); the rest of a row comes with it, from the same block of the peer.
  uint4* mine = static_cast<uint4*>(group.mailbox[group.rank]) + box;
  __shared__ bool block_gave_up;
  if (threadIdx.x == 0) {
    bool gave_up = false;
    for (int64_t row = b; row < rows; row += kPeerBlocks) {
      for (int p = 0; p < group.world; ++p) {
        if (p != group.rank) {
          (void)WaitForMail(group, mine + p * slot_vectors + row * row_vectors, true, &gave_up);
        }
      }
    }
    block_gave_up = gave_up;
  }
  __syncthreads();

  // 3. Sum each row (every thread waits for its own vectors, which are there or nearly), add and
  // normalise, and empty the mailbox slots behind it.
  const uint4 empty = make_uint4(kEmptyWord, kEmptyWord, kEmptyWord, kEmptyWord);
  bool gave_up = block_gave_up;
  const float4* w = reinterpret_cast<const float4*>(weight);
  for (int64_t row = b; row < rows; row += kPeerBlocks) {
    float4* r = reinterpret_cast<float4*>(residual + row * width);
    float sum_sq = 0.0f;
    for (int64_t i = threadIdx.x; i < row_vectors; i += kThreads) {
      const int64_t at = row * row_vectors + i;
      // Local loads now, so one rank after another costs nothing.
      float acc[kPerVector] = {};
      for (int p = 0; p < group.world; ++p) {
        if (p == group.rank) {
          Accumulate<T>(NoEmptyWords<T>(in[at]), acc);
        } else {
          uint4* slot = mine + p * slot_vectors + at;
          Accumulate<T>(WaitForMail(group, slot, false, &gave_up), acc);
          *slot = empty;
        }
      }
#pragma unroll
      for (int k = 0; k < kPerVector / 4; ++k) {
        float4 x = r[i * (kPerVector / 4) + k];
        x.x += acc[4 * k];
        x.y += acc[4 * k + 1];
        x.z += acc[4 * k + 2];
        x.w += acc[4 * k + 3];
        r[i * (kPerVector / 4) + k] = x;
        sum_sq += x.x * x.x + x.y * x.y + x.z * x.z + x.w * x.w;
      }
    }
    const float scale = rsqrtf(BlockSum(sum_sq) / static_cast<float>(width) + eps);
    TOut* o = out + row * width;
    // Each thread reads back only the residual it wrote above.
    for (int64_t i = threadIdx.x; i < row_vectors; i += kThreads) {
#pragma unroll
      for (int k = 0; k < kPerVector / 4; ++k) {
        const int64_t j = i * (kPerVector / 4) + k;
        const float4 x = r[j];
        const float4 g = w[j];
        o[4 * j] = FromFloat<TOut>(x.x * scale * g.x);
        o[4 * j + 1] = FromFloat<TOut>(x.y * scale * g.y);
        o[4 * j + 2] = FromFloat<TOut>(x.z * scale * g.z);
        o[4 * j + 3] = FromFloat<TOut>(x.w * scale * g.w);
      }
    }
  }
  if (threadIdx.x == 0) self->epochs[b] = epoch;
}

__global__ void EmptyMailboxesKernel(uint32_t* words, int64_t count) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    words[i] = kEmptyWord;
  }
}

int ElementBytes(ElementType type) { return type == ElementType::kFloat32 ? 4 : 2; }

}  // namespace

bool PeerAllReduceFits(const PeerGroup& group, const void* input, ElementType type, int64_t count) {
  const int64_t bytes = count * ElementBytes(type);
  return group.world >= 1 && group.world <= kPeerMaxRanks && count > 0 &&
         bytes % kVectorBytes == 0 && bytes <= group.half_bytes &&
         reinterpret_cast<uintptr_t>(input) % kVectorBytes == 0;
}

cudaError_t PeerAllReduceToFloat(const PeerGroup& group, const void* input, ElementType type,
                                 float* out, int64_t count, cudaStream_t stream) {
  if (!PeerAllReduceFits(group, input, type, count) ||
      reinterpret_cast<uintptr_t>(out) % kVectorBytes != 0) {
    return cudaErrorInvalidValue;
  }
  const int64_t vectors = count * ElementBytes(type) / kVectorBytes;
  switch (type) {
    case ElementType::kFloat32:
      PeerAllReduceKernel<float><<<kPeerBlocks, kThreads, 0, stream>>>(
          group, static_cast<const float*>(input), out, vectors);
      break;
    case ElementType::kFloat16:
      PeerAllReduceKernel<__half><<<kPeerBlocks, kThreads, 0, stream>>>(
          group, static_cast<const __half*>(input), out, vectors);
      break;
    case ElementType::kBFloat16:
      PeerAllReduceKernel<__nv_bfloat16><<<kPeerBlocks, kThreads, 0, stream>>>(
          group, static_cast<const __nv_bfloat16*>(input), out, vectors);
      break;
  }
  return cudaGetLastError();
}

bool PeerAllReduceAddRmsNormFits(const PeerGroup& group, const void* input, ElementType type,
                                 const float* residual, const float* weight, int64_t rows,
                                 int64_t width) {
  const auto aligned = [](const void* p) {
    return reinterpret_cast<uintptr_t>(p) % kVectorBytes == 0;
  };
  return rows > 0 && rows <= kPeerFusedMaxRows && width > 0 &&
         (width * ElementBytes(type)) % kVectorBytes == 0 &&
         PeerAllReduceFits(group, input, type, rows * width) &&
         group.mailbox[group.rank] != nullptr &&
         rows * width * ElementBytes(type) <= group.mailbox_slot_bytes && aligned(residual) &&
         aligned(weight);
}

cudaError_t PeerAllReduceAddRmsNorm(const PeerGroup& group, const void* input, ElementType type,
                                    float* residual, const float* weight, float eps, void* out,
                                    ElementType out_type, int64_t rows, int64_t width,
                                    cudaStream_t stream) {
  if (!PeerAllReduceAddRmsNormFits(group, input, type, residual, weight, rows, width)) {
    return cudaErrorInvalidValue;
  }
  return Dispatch(type, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    return Dispatch(out_type, [&](auto* out_tag) {
      using TOut = std::remove_pointer_t<decltype(out_tag)>;
      PeerAllReduceAddRmsNormKernel<T, TOut>
          <<<kPeerBlocks, kThreads, 0, stream>>>(group, static_cast<const T*>(input), residual,
                                                 weight, eps, static_cast<TOut*>(out), rows, width);
      return cudaGetLastError();
    });
  });
}

cudaError_t EmptyPeerMailboxes(void* mailboxes, int64_t bytes, cudaStream_t stream) {
  if (bytes % 4 != 0 || reinterpret_cast<uintptr_t>(mailboxes) % 4 != 0) {
    return cudaErrorInvalidValue;
  }
  EmptyMailboxesKernel<<<128, 256, 0, stream>>>(static_cast<uint32_t*>(mailboxes), bytes / 4);
  return cudaGetLastError();
}

}  // namespace qwen3::kernels

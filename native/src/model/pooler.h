// Pooling of a packed batch's hidden states into one row per sequence, as sentence-transformers'
// Pooling module does: the last token (decoders: the appended EOS), the first token (cls), or the
// mean over each sequence's tokens after its prompt (include_prompt = false skips
// in.prompt_lengths tokens). Device ops only, with shapes fixed by the batch, so it may run inside
// a CUDA graph.
#pragma once

#include <ATen/core/Tensor.h>

#include "model/embedding_model.h"
#include "model/packed_input.h"

namespace qwen3 {

// hidden: [T, h] (every token), or [n, h] already one row per sequence for kLastToken / kCls (a
// model that computed only the pooled rows; told apart by n != T). Returns [n, h] fp32, n =
// in.last_token.size(0).
at::Tensor PoolHidden(const at::Tensor& hidden, const PackedInput& in, Pooling pooling);

}  // namespace qwen3

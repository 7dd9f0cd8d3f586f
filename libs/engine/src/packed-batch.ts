import type { PackedBatch } from './engine.port';

export interface PackedSequence {
  tokens: Int32Array;
  /** The Matryoshka size of its row. */
  dimensions: number;
  /** Tokens at its start that mean pooling leaves out (include_prompt=false); default 0. */
  promptLength?: number;
}

/** Packs sequences back to back (no padding), each with its row size and prompt length. */
export function packBatch(items: ReadonlyArray<PackedSequence>): PackedBatch {
  const total = items.reduce((sum, item) => sum + item.tokens.length, 0);
  const tokenIds = new Int32Array(total);
  const cuSeqlens = new Int32Array(items.length + 1);
  const dimensions = new Int32Array(items.length);
  const promptLengths = new Int32Array(items.length);
  let offset = 0;
  items.forEach((item, index) => {
    tokenIds.set(item.tokens, offset);
    offset += item.tokens.length;
    cuSeqlens[index + 1] = offset;
    dimensions[index] = item.dimensions;
    promptLengths[index] = item.promptLength ?? 0;
  });
  return { tokenIds, cuSeqlens, dimensions, promptLengths };
}

/** The engine's answer to a batch as one row per sequence: views into `rows`, not copies. */
export function splitRows(rows: Float32Array, dimensions: ArrayLike<number>): Float32Array[] {
  const out: Float32Array[] = [];
  let offset = 0;
  for (let index = 0; index < dimensions.length; index++) {
    out.push(rows.subarray(offset, offset + dimensions[index]));
    offset += dimensions[index];
  }
  return out;
}

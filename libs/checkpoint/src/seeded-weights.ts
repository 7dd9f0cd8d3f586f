import { CheckpointDtype, toBfloat16Bits, toFloat16Bits } from './dtype';
import { Qwen3TensorRole } from './qwen3-architecture';

/**
 * Deterministic random weights: the same (seed, tensor name, dtype) gives the same bytes on any machine
 * and under any chunking by the caller, because
 * - every tensor is cut into fixed chunks of WEIGHT_CHUNK_ELEMENTS, each its own xoshiro128** stream
 *   seeded by splitmix64 from (seed, FNV-1a of the name, chunk index) — chunks could be drawn in
 *   parallel and the file would not change;
 * - a value is an Irwin-Hall draw (sum of the four bytes of one 32-bit output, 0..1020, bell-shaped,
 *   variance 21845) looked up in a per-role table built once with exactly rounded arithmetic.
 * The inner loop is integer-only and does ~400M values/s on one core.
 */
export const WEIGHT_CHUNK_ELEMENTS = 1 << 20;

/** Mean and standard deviation of each role's values. */
export const WEIGHT_DISTRIBUTIONS: Readonly<Record<Qwen3TensorRole, { mean: number; std: number }>> = {
  embedding: { mean: 0, std: 0.02 },
  linear: { mean: 0, std: 0.02 },
  // RMSNorm weights near 1 with enough spread that q_norm/k_norm/norm visibly shape the output.
  norm: { mean: 1, std: 0.1 },
  // Biases (Qwen2's q/k/v, every encoder linear and LayerNorm): small, so they shift without dominating.
  bias: { mean: 0, std: 0.02 },
  // A reranker's own lm_head / score rows, read against a final-norm state of RMS ~1: a logit's spread
  // is std * sqrt(hidden), ~0.2 on the tiny preset and ~1.8 on the 8B, so scores stay off 0 and 1
  // at every size (a larger std saturates the 8B's; the tiny's still differ by ~0.02 between documents).
  head: { mean: 0, std: 0.02 },
};

const IRWIN_HALL_LEVELS = 1021;
const IRWIN_HALL_MEAN = 510;
const IRWIN_HALL_STD = Math.sqrt((4 * (256 * 256 - 1)) / 12);

const MASK64 = (1n << 64n) - 1n;

function mix64(value: bigint): bigint {
  let z = value & MASK64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return z ^ (z >> 31n);
}

function fnv1a64(text: string): bigint {
  let hash = 0xcbf29ce484222325n;
  for (const byte of Buffer.from(text, 'utf8')) {
    hash ^= BigInt(byte);
    hash = (hash * 0x100000001b3n) & MASK64;
  }
  return hash;
}

/** xoshiro128** state for one (seed, tensor, chunk) stream. Never all zeros. */
export function chunkStreamState(seed: bigint, tensorName: string, chunkIndex: number): Uint32Array {
  const base =
    mix64(mix64(seed & MASK64) ^ fnv1a64(tensorName)) ^ mix64(BigInt(chunkIndex) + 0x9e3779b97f4a7c15n);
  const gamma = 0x9e3779b97f4a7c15n;
  const a = mix64(base + gamma);
  const b = mix64(base + 2n * gamma);
  const state = new Uint32Array([
    Number(a & 0xffffffffn),
    Number(a >> 32n),
    Number(b & 0xffffffffn),
    Number(b >> 32n),
  ]);
  if ((state[0] | state[1] | state[2] | state[3]) === 0) state[0] = 1;
  return state;
}

/**
 * Fills `out` with table values picked by one xoshiro128** stream. One function serves both element
 * types: a checkpoint is drawn in a single dtype, so V8 still sees one array type here and keeps the
 * loop at full speed.
 */
function fillFromTable<T extends Uint16Array | Float32Array>(out: T, table: T, state: Uint32Array): void {
  let s0 = state[0] | 0;
  let s1 = state[1] | 0;
  let s2 = state[2] | 0;
  let s3 = state[3] | 0;
  const n = out.length;
  for (let i = 0; i < n; i++) {
    const x = Math.imul(s1, 5);
    const r = Math.imul((x << 7) | (x >>> 25), 9);
    const t = s1 << 9;
    s2 ^= s0;
    s3 ^= s1;
    s1 ^= s2;
    s0 ^= s3;
    s2 ^= t;
    s3 = (s3 << 11) | (s3 >>> 21);
    out[i] = table[(r & 255) + ((r >>> 8) & 255) + ((r >>> 16) & 255) + (r >>> 24)];
  }
}

/** Draws tensor data for one checkpoint (one seed, one dtype). */
export class SeededWeightSampler {
  private readonly seed: bigint;
  private readonly halfTables = new Map<Qwen3TensorRole, Uint16Array>();
  private readonly floatTables = new Map<Qwen3TensorRole, Float32Array>();

  constructor(
    seed: number | bigint,
    readonly dtype: CheckpointDtype,
  ) {
    if (typeof seed === 'number' && (!Number.isSafeInteger(seed) || seed < 0)) {
      throw new RangeError(`seed must be a non-negative integer (got ${seed})`);
    }
    this.seed = BigInt(seed);
    for (const [role, { mean, std }] of Object.entries(WEIGHT_DISTRIBUTIONS) as Array<
      [Qwen3TensorRole, { mean: number; std: number }]
    >) {
      const floats = new Float32Array(IRWIN_HALL_LEVELS);
      const halves = new Uint16Array(IRWIN_HALL_LEVELS);
      for (let level = 0; level < IRWIN_HALL_LEVELS; level++) {
        const value = mean + (std * (level - IRWIN_HALL_MEAN)) / IRWIN_HALL_STD;
        floats[level] = value;
        halves[level] = dtype === 'f16' ? toFloat16Bits(value) : toBfloat16Bits(value);
      }
      this.floatTables.set(role, floats);
      this.halfTables.set(role, halves);
    }
  }

  get bytesPerElement(): number {
    return this.dtype === 'f32' ? 4 : 2;
  }

  /**
   * Fills `out` (Uint16Array for bf16/f16, Float32Array for f32) with elements
   * [chunkIndex * WEIGHT_CHUNK_ELEMENTS, + out.length) of the tensor. out.length must be
   * WEIGHT_CHUNK_ELEMENTS except for a tensor's last chunk.
   */
  fillChunk(
    tensorName: string,
    role: Qwen3TensorRole,
    chunkIndex: number,
    out: Uint16Array | Float32Array,
  ): void {
    if (out.length > WEIGHT_CHUNK_ELEMENTS)
      throw new RangeError('a chunk holds at most WEIGHT_CHUNK_ELEMENTS');
    const state = chunkStreamState(this.seed, tensorName, chunkIndex);
    if (this.dtype === 'f32') {
      if (!(out instanceof Float32Array)) throw new TypeError('f32 tensors are drawn into a Float32Array');
      fillFromTable(out, this.floatTables.get(role)!, state);
    } else {
      if (!(out instanceof Uint16Array)) throw new TypeError('16-bit tensors are drawn into a Uint16Array');
      fillFromTable(out, this.halfTables.get(role)!, state);
    }
  }

  /** Allocates a chunk buffer of the right element type. */
  allocateChunk(elements = WEIGHT_CHUNK_ELEMENTS): Uint16Array | Float32Array {
    return this.dtype === 'f32' ? new Float32Array(elements) : new Uint16Array(elements);
  }
}

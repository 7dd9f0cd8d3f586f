import { mulberry32 } from '@app/common/seeded-random';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';

import { cosine, norm } from '@app/embeddings/embedding-similarity';
import { EngineError, type EngineInfo, type EngineLoadOptions, type PackedBatch } from './engine.port';
import { NativeEngine, defaultAddonPath, toEngineError } from './native-engine';
import { splitRows } from './packed-batch';

/**
 * Runs the real addon (build it with `make native`) on tiny Qwen3 checkpoints with seeded random
 * bf16 weights, written here in the Hugging Face layout.
 */

interface TinyConfig {
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  intermediate: number;
  vocab: number;
  maxPositions: number;
}

const TINY: TinyConfig = {
  hidden: 64,
  layers: 2,
  heads: 8,
  kvHeads: 4,
  headDim: 16,
  intermediate: 128,
  vocab: 512,
  maxPositions: 256,
};

/** Big enough that one batch keeps the engine busy for a while on two cores. */
const SLOW: TinyConfig = {
  hidden: 256,
  layers: 4,
  heads: 8,
  kvHeads: 4,
  headDim: 32,
  intermediate: 1024,
  vocab: 512,
  maxPositions: 4096,
};

/** Writes config.json + model.safetensors (BF16, no "model." prefix) and returns the directory. */
function writeCheckpoint(dir: string, c: TinyConfig, seed = 0): string {
  fs.mkdirSync(dir, { recursive: true });
  const config = {
    architectures: ['Qwen3Model'],
    model_type: 'qwen3',
    hidden_size: c.hidden,
    num_hidden_layers: c.layers,
    num_attention_heads: c.heads,
    num_key_value_heads: c.kvHeads,
    head_dim: c.headDim,
    intermediate_size: c.intermediate,
    vocab_size: c.vocab,
    max_position_embeddings: c.maxPositions,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000,
    rope_scaling: null,
    hidden_act: 'silu',
    attention_bias: false,
    torch_dtype: 'bfloat16',
  };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));

  const q = c.heads * c.headDim;
  const kv = c.kvHeads * c.headDim;
  const shapes: Array<[string, number[]]> = [['embed_tokens.weight', [c.vocab, c.hidden]]];
  for (let i = 0; i < c.layers; i++) {
    const p = `layers.${i}.`;
    shapes.push(
      [`${p}input_layernorm.weight`, [c.hidden]],
      [`${p}self_attn.q_proj.weight`, [q, c.hidden]],
      [`${p}self_attn.k_proj.weight`, [kv, c.hidden]],
      [`${p}self_attn.v_proj.weight`, [kv, c.hidden]],
      [`${p}self_attn.o_proj.weight`, [c.hidden, q]],
      [`${p}self_attn.q_norm.weight`, [c.headDim]],
      [`${p}self_attn.k_norm.weight`, [c.headDim]],
      [`${p}post_attention_layernorm.weight`, [c.hidden]],
      [`${p}mlp.gate_proj.weight`, [c.intermediate, c.hidden]],
      [`${p}mlp.up_proj.weight`, [c.intermediate, c.hidden]],
      [`${p}mlp.down_proj.weight`, [c.hidden, c.intermediate]],
    );
  }
  shapes.push(['norm.weight', [c.hidden]]);

  const random = mulberry32(seed);
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  const header: Record<string, unknown> = {};
  const chunks: Buffer[] = [];
  let offset = 0;
  for (const [name, shape] of shapes) {
    const count = shape.reduce((a, b) => a * b, 1);
    const data = Buffer.alloc(count * 2);
    const isNorm = name.endsWith('norm.weight');
    const scale = isNorm ? 0.2 : 1 / Math.sqrt(shape[shape.length - 1]);
    for (let i = 0; i < count; i++) {
      f32[0] = (isNorm ? 1 : 0) + scale * (random() * 2 - 1);
      const bits = u32[0];
      data.writeUInt16LE(((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff, i * 2);
    }
    header[name] = { dtype: 'BF16', shape, data_offsets: [offset, offset + data.length] };
    offset += data.length;
    chunks.push(data);
  }
  header.__metadata__ = { format: 'pt' };
  let json = Buffer.from(JSON.stringify(header));
  json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(path.join(dir, 'model.safetensors'), Buffer.concat([length, json, ...chunks]));
  return dir;
}

function batchOf(sequences: number[][], dims: number[]): PackedBatch {
  const cu = [0];
  for (const s of sequences) cu.push(cu[cu.length - 1] + s.length);
  return {
    tokenIds: Int32Array.from(sequences.flat()),
    cuSeqlens: Int32Array.from(cu),
    dimensions: Int32Array.from(dims),
  };
}

/** Load options for the CPU (float32, one rank), with `overrides`. */
function onCpu(modelPath: string, overrides: Partial<EngineLoadOptions> = {}): EngineLoadOptions {
  return { modelPath, device: 'cpu', dtype: 'float32', deviceIds: [], tensorParallelSize: 1, ...overrides };
}

async function expectEngineError(promise: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(EngineError);
  expect((error as EngineError).code).toBe(code);
  if (message) expect((error as EngineError).message).toMatch(message);
}

const addonPath = defaultAddonPath();
const addonBuilt = fs.existsSync(addonPath);
if (!addonBuilt) {
  // eslint-disable-next-line no-restricted-properties -- CI (set by CI runners) makes a missing addon fail the run
  if (process.env.CI) throw new Error(`native addon missing at ${addonPath}: run 'make native' first`);
  console.warn(`skipping NativeEngine tests: ${addonPath} is not built (run 'make native')`);
}
const describeWithAddon = addonBuilt ? describe : describe.skip;

describe('toEngineError', () => {
  it('maps addon errors by code and argument errors to INVALID_ARGUMENT', () => {
    expect(toEngineError(Object.assign(new Error('oom'), { code: 'OUT_OF_MEMORY' })).code).toBe(
      'OUT_OF_MEMORY',
    );
    expect(toEngineError(new RangeError('bad')).code).toBe('INVALID_ARGUMENT');
    expect(toEngineError(new TypeError('bad')).code).toBe('INVALID_ARGUMENT');
    expect(toEngineError(Object.assign(new Error('x'), { code: 'ENOENT' })).code).toBe('INTERNAL');
    expect(toEngineError('boom').code).toBe('INTERNAL');
  });

  it('fails load with MODEL_LOAD_FAILED naming the addon when it is not built', async () => {
    const sut = new NativeEngine('/nonexistent/qwen3_embed.node');
    await expectEngineError(sut.load(onCpu('/x')), 'MODEL_LOAD_FAILED', /\/nonexistent\/qwen3_embed\.node/);
  });
});

/**
 * A stand-in addon (a plain JS module at a temporary path) that records what NativeEngine hands it:
 * the plumbing of the load options and batch fields, whatever the built addon supports.
 */
describe('NativeEngine over a recording addon', () => {
  interface Recorded {
    loads: unknown[];
    embeds: unknown[][];
    info: Record<string, unknown>;
  }
  let dir: string;
  let recorded: Recorded;

  function recordingAddon(info: Record<string, unknown>): string {
    const file = path.join(
      dir,
      `addon-${Object.keys(info).length}-${Math.random().toString(36).slice(2)}.js`,
    );
    fs.writeFileSync(
      file,
      `const recorded = { loads: [], embeds: [], info: ${JSON.stringify(info)} };
module.exports = {
  recorded,
  Engine: class {
    load(options) { recorded.loads.push(options); return Promise.resolve(recorded.info); }
    embed(...args) { recorded.embeds.push(args); return Promise.resolve(new Float32Array(2)); }
    info() { return recorded.info; }
    health() { return { ok: true }; }
    dispose() { return Promise.resolve(); }
  },
};`,
    );
    // The same loader NativeEngine uses, so both see one module instance.
    recorded = (createRequire(__filename)(file) as { recorded: Recorded }).recorded;
    return file;
  }

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qwen3-recording-addon-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('passes pooling, normalize and the Dense layers, with their defaults when unset', async () => {
    const sut = new NativeEngine(recordingAddon({ hiddenSize: 64, outputDimension: 32 }));
    await sut.load(onCpu('/m'));
    await sut.load(onCpu('/m', { pooling: 'mean', normalize: false, denseLayers: ['/m/2_Dense'] }));
    expect(recorded.loads).toEqual([
      expect.objectContaining({ modelPath: '/m', pooling: 'lasttoken', normalize: true, denseLayers: [] }),
      expect.objectContaining({ pooling: 'mean', normalize: false, denseLayers: ['/m/2_Dense'] }),
    ]);
  });

  it('passes the head and the yes/no token ids; a score head leaves normalize to the addon', async () => {
    const sut = new NativeEngine(recordingAddon({ hiddenSize: 64, outputDimension: 1, head: 'yes-no' }));
    await sut.load(onCpu('/m', { head: 'yes-no', yesNoTokenIds: [9693, 2152] }));
    await sut.load(onCpu('/m', { head: 'classifier', normalize: false }));
    expect(recorded.loads).toEqual([
      expect.objectContaining({ head: 'yes-no', yesNoTokenIds: [9693, 2152] }),
      expect.objectContaining({ head: 'classifier', normalize: false }),
    ]);
    expect(recorded.loads[0]).not.toHaveProperty('normalize');
    expect(recorded.loads[1]).not.toHaveProperty('yesNoTokenIds');
    expect(sut.info()).toMatchObject({ head: 'yes-no', outputDimension: 1 });
  });

  it("reports an older addon's model as an embedding model", async () => {
    const sut = new NativeEngine(recordingAddon({ hiddenSize: 64, outputDimension: 64 }));
    expect((await sut.load(onCpu('/m'))).head).toBe('embedding');
    expect(recorded.loads[0]).toMatchObject({ head: 'embedding', normalize: true });
  });

  it("passes each sequence's prompt length as embed's fourth argument", async () => {
    const sut = new NativeEngine(recordingAddon({ hiddenSize: 64, outputDimension: 64 }));
    await sut.load(onCpu('/m'));
    const batch = { ...batchOf([[1, 2, 3]], [32]), promptLengths: Int32Array.of(2) };
    await sut.embed(batch);
    expect(recorded.embeds).toHaveLength(1);
    const [tokenIds, cuSeqlens, dimensions, promptLengths] = recorded.embeds[0] as Int32Array[];
    expect([tokenIds, cuSeqlens, dimensions, promptLengths].map((array) => Array.from(array))).toEqual([
      [1, 2, 3],
      [0, 3],
      [32],
      [2],
    ]);
  });

  it("reports the addon's output dimension, or the hidden size from an addon that has none", async () => {
    const dense = new NativeEngine(recordingAddon({ hiddenSize: 64, outputDimension: 32 }));
    expect((await dense.load(onCpu('/m'))).outputDimension).toBe(32);
    expect(dense.info().outputDimension).toBe(32);
    const older = new NativeEngine(recordingAddon({ hiddenSize: 64 }));
    expect((await older.load(onCpu('/m'))).outputDimension).toBe(64);
    expect(older.info().outputDimension).toBe(64);
  });
});

describeWithAddon(NativeEngine.name, () => {
  let root: string;
  let tinyDir: string;
  let sut: NativeEngine;
  let info: EngineInfo;
  const progress: string[] = [];

  beforeAll(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'qwen3-engine-spec-'));
    tinyDir = writeCheckpoint(path.join(root, 'tiny'), TINY);
    sut = new NativeEngine();
    info = await sut.load(onCpu(tinyDir, { cpuThreads: 1, onProgress: (line) => progress.push(line) }));
  });

  afterAll(async () => {
    await sut?.dispose();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('loads and describes the model', () => {
    expect(info).toMatchObject({
      modelPath: tinyDir,
      modelType: 'qwen3',
      hiddenSize: 64,
      numLayers: 2,
      numAttentionHeads: 8,
      numKeyValueHeads: 4,
      headDim: 16,
      intermediateSize: 128,
      vocabSize: 512,
      maxPositionEmbeddings: 256,
      device: 'cpu',
      dtype: 'float32',
      tensorParallelSize: 1,
      replicas: 1,
      cudaGraphMaxTokens: 0, // graphs are CUDA-only
      peerAllReduce: false, // a CUDA tensor-parallel path
    });
    expect(info.parameters).toBeGreaterThan(0);
    expect(info.devices).toHaveLength(1);
    expect(info.devices[0]).toMatchObject({ index: -1, name: 'cpu', replica: 0, rank: 0 });
    expect(info.devices[0].usedMemoryBytes).toBeGreaterThan(0);
    expect(sut.info()).toEqual(info);
    expect(sut.health()).toEqual({ ok: true });
    expect(progress.some((line) => line.includes('model.safetensors'))).toBe(true);
  });

  it('embeds a packed batch into unit rows of the requested sizes', async () => {
    const dims = [64, 32, 48];
    const out = await sut.embed(batchOf([[1, 2, 3], [4, 5, 6, 7, 8], [9]], dims));
    expect(Object.prototype.toString.call(out)).toBe('[object Float32Array]');
    expect(out.length).toBe(64 + 32 + 48);
    for (const row of splitRows(out, dims)) expect(norm(row)).toBeCloseTo(1, 5);
  });

  it('gives a text the same embedding whatever shares its batch', async () => {
    const alone = await sut.embed(batchOf([[4, 5, 6, 7, 8]], [64]));
    const packed = await sut.embed(
      batchOf(
        [
          [1, 2, 3],
          [4, 5, 6, 7, 8],
          [9, 10],
        ],
        [64, 64, 64],
      ),
    );
    expect(cosine(alone, splitRows(packed, [64, 64, 64])[1])).toBeGreaterThan(0.99999);
  });

  it('truncates before normalising (Matryoshka)', async () => {
    const full = await sut.embed(batchOf([[11, 12, 13]], [64]));
    const short = await sut.embed(batchOf([[11, 12, 13]], [32]));
    const head = full.slice(0, 32);
    const scale = norm(head);
    for (let i = 0; i < 32; i++) expect(short[i]).toBeCloseTo(head[i] / scale, 5);
  });

  it.each<[string, PackedBatch]>([
    ['an empty batch', batchOf([], [])],
    [
      'a zero-length sequence',
      {
        tokenIds: Int32Array.from([1, 2]),
        cuSeqlens: Int32Array.from([0, 2, 2]),
        dimensions: Int32Array.from([64, 64]),
      },
    ],
    ['a token id beyond the table', batchOf([[1, 512]], [64])],
    ['a negative token id', batchOf([[-1]], [64])],
    [
      'cuSeqlens not starting at 0',
      {
        tokenIds: Int32Array.from([1, 2]),
        cuSeqlens: Int32Array.from([1, 2]),
        dimensions: Int32Array.from([64]),
      },
    ],
    [
      'cuSeqlens not ending at the token count',
      {
        tokenIds: Int32Array.from([1, 2, 3]),
        cuSeqlens: Int32Array.from([0, 2]),
        dimensions: Int32Array.from([64]),
      },
    ],
    [
      'decreasing cuSeqlens',
      {
        tokenIds: Int32Array.from([1, 2, 3]),
        cuSeqlens: Int32Array.from([0, 2, 1, 3]),
        dimensions: Int32Array.from([64, 64, 64]),
      },
    ],
    ['too few dimensions', batchOf([[1], [2]], [64])],
    ['dimensions below 32', batchOf([[1]], [31])],
    ['dimensions above hidden', batchOf([[1]], [65])],
    ['a sequence longer than max_position_embeddings', batchOf([new Array<number>(257).fill(1)], [64])],
    [
      'a plain array instead of an Int32Array',
      {
        tokenIds: [1, 2] as unknown as Int32Array,
        cuSeqlens: Int32Array.from([0, 2]),
        dimensions: Int32Array.from([64]),
      },
    ],
    [
      'a Float32Array of dimensions',
      {
        tokenIds: Int32Array.from([1]),
        cuSeqlens: Int32Array.from([0, 1]),
        dimensions: Float32Array.from([64]) as unknown as Int32Array,
      },
    ],
  ])('rejects %s with INVALID_ARGUMENT and keeps serving', async (_, batch) => {
    await expectEngineError(sut.embed(batch), 'INVALID_ARGUMENT');
    const out = await sut.embed(batchOf([[1, 2, 3]], [32]));
    expect(out.length).toBe(32);
  });

  it('completes many concurrent batches, each with its own result', async () => {
    const sequences = Array.from({ length: 12 }, (_, i) =>
      Array.from({ length: 3 + i }, (__, j) => (i * 31 + j) % 512),
    );
    const results = await Promise.all(sequences.map((s) => sut.embed(batchOf([s], [64]))));
    const again = await sut.embed(batchOf(sequences, new Array<number>(sequences.length).fill(64)));
    splitRows(again, new Array<number>(sequences.length).fill(64)).forEach((row, i) => {
      expect(cosine(row, results[i])).toBeGreaterThan(0.99999);
    });
  });

  it.each([
    ['sleep between batches', 0],
    ['spin between batches (BUSY_POLL)', 20_000],
  ])(
    'produces the same embeddings with tensor parallelism on the CPU; rank threads %s',
    async (_, idleSpinUs) => {
      const tp = new NativeEngine();
      try {
        await tp.load(onCpu(tinyDir, { tensorParallelSize: 2, cpuThreads: 2, idleSpinUs }));
        const batch = batchOf(
          [
            [1, 2, 3, 4],
            [5, 6],
          ],
          [64, 64],
        );
        const [a, b] = await Promise.all([sut.embed(batch), tp.embed(batch)]);
        splitRows(a, [64, 64]).forEach((row, i) =>
          expect(cosine(row, splitRows(b, [64, 64])[i])).toBeGreaterThan(0.99999),
        );
        expect(tp.info().devices.map((d) => d.rank)).toEqual([0, 1]);
      } finally {
        await tp.dispose();
      }
    },
  );

  it('keeps the event loop free during a long batch', async () => {
    const slow = new NativeEngine();
    try {
      await slow.load(onCpu(writeCheckpoint(path.join(root, 'slow'), SLOW, 1), { cpuThreads: 1 }));
      const long = Array.from({ length: 4 }, (_, s) =>
        Array.from({ length: 1024 }, (__, t) => (s + t) % 512),
      );
      let ticks = 0;
      const timer = setInterval(() => ticks++, 5);
      const started = Date.now();
      try {
        await slow.embed(batchOf(long, [256, 256, 256, 256]));
      } finally {
        clearInterval(timer);
      }
      const elapsed = Date.now() - started;
      // A blocked loop would tick at most once; a free one ticks about every 5 ms.
      expect(elapsed).toBeGreaterThan(50);
      expect(ticks).toBeGreaterThanOrEqual(Math.min(5, Math.floor(elapsed / 20)));
    } finally {
      await slow.dispose();
    }
  }, 60_000);

  describe('with a bad model directory', () => {
    const load = (engine: NativeEngine, modelPath: string) => engine.load(onCpu(modelPath));

    it('names the missing config.json', async () => {
      const dir = path.join(root, 'empty');
      fs.mkdirSync(dir, { recursive: true });
      await expectEngineError(load(new NativeEngine(), dir), 'MODEL_LOAD_FAILED', /config\.json/);
    });

    it('names the missing weights file', async () => {
      const dir = path.join(root, 'no-weights');
      writeCheckpoint(dir, TINY);
      fs.rmSync(path.join(dir, 'model.safetensors'));
      await expectEngineError(load(new NativeEngine(), dir), 'MODEL_LOAD_FAILED', /model\.safetensors/);
    });

    it('names a truncated file', async () => {
      const dir = path.join(root, 'truncated');
      writeCheckpoint(dir, TINY);
      const file = path.join(dir, 'model.safetensors');
      fs.truncateSync(file, fs.statSync(file).size - 100);
      await expectEngineError(
        load(new NativeEngine(), dir),
        'MODEL_LOAD_FAILED',
        /model\.safetensors.*truncated/,
      );
    });

    it('rejects an unsupported configuration', async () => {
      const dir = path.join(root, 'scaled-rope');
      writeCheckpoint(dir, TINY);
      const configPath = path.join(dir, 'config.json');
      const config = JSON.parse(fs.readFileSync(configPath, 'utf8')) as Record<string, unknown>;
      fs.writeFileSync(configPath, JSON.stringify({ ...config, rope_scaling: { type: 'yarn', factor: 4 } }));
      await expectEngineError(load(new NativeEngine(), dir), 'MODEL_LOAD_FAILED', /rope_scaling/);
    });

    it('can load after a failed load', async () => {
      const engine = new NativeEngine();
      try {
        await expectEngineError(load(engine, path.join(root, 'nope')), 'MODEL_LOAD_FAILED', /nope/);
        await expect(load(engine, tinyDir)).resolves.toMatchObject({ hiddenSize: 64 });
      } finally {
        await engine.dispose();
      }
    });
  });

  describe('with a score head', () => {
    /** Rows of a BF16 matrix in a checkpoint written by writeCheckpoint, as floats. */
    function readRows(dir: string, name: string, rows: number[]): Float32Array[] {
      const file = fs.readFileSync(path.join(dir, 'model.safetensors'));
      const headerLength = Number(file.readBigUInt64LE(0));
      const header = JSON.parse(file.subarray(8, 8 + headerLength).toString('utf8')) as Record<
        string,
        { shape: number[]; data_offsets: [number, number] }
      >;
      const {
        shape,
        data_offsets: [start],
      } = header[name];
      const columns = shape[1];
      const u32 = new Uint32Array(1);
      const f32 = new Float32Array(u32.buffer);
      return rows.map((row) =>
        Float32Array.from({ length: columns }, (_, k) => {
          u32[0] = file.readUInt16LE(8 + headerLength + start + (row * columns + k) * 2) << 16;
          return f32[0];
        }),
      );
    }
    const dot = (a: ArrayLike<number>, b: ArrayLike<number>): number =>
      Array.from(a).reduce((sum, value, k) => sum + value * b[k], 0);

    it('scores each sequence as logit(yes) - logit(no) of the tied embeddings', async () => {
      const sequences = [[1, 2, 3], [4, 5, 6, 7, 8], [9]];
      const reranker = new NativeEngine();
      const rows = new NativeEngine();
      try {
        const described = await reranker.load(onCpu(tinyDir, { head: 'yes-no', yesNoTokenIds: [17, 42] }));
        expect(described).toMatchObject({ head: 'yes-no', outputDimension: 1, hiddenSize: 64 });
        const raw = await reranker.embed(batchOf(sequences, [1, 1, 1]));
        expect(raw.length).toBe(3);
        await rows.load(onCpu(tinyDir, { normalize: false }));
        const hidden = splitRows(await rows.embed(batchOf(sequences, [64, 64, 64])), [64, 64, 64]);
        const [yes, no] = readRows(tinyDir, 'embed_tokens.weight', [17, 42]);
        hidden.forEach((h, i) => expect(raw[i]).toBeCloseTo(dot(h, yes) - dot(h, no), 4));
        await expectEngineError(
          reranker.embed(batchOf([[1, 2]], [64])),
          'INVALID_ARGUMENT',
          /dimensions\[0\] = 64.*one float/,
        );
      } finally {
        await Promise.all([reranker.dispose(), rows.dispose()]);
      }
    });

    it('refuses what a score head cannot serve', async () => {
      const engine = new NativeEngine();
      await expectEngineError(
        engine.load(onCpu(tinyDir, { head: 'classifier' })),
        'MODEL_LOAD_FAILED',
        /score\.weight/,
      );
      await expectEngineError(
        engine.load(onCpu(tinyDir, { head: 'yes-no', yesNoTokenIds: [17, 42], normalize: true })),
        'INVALID_ARGUMENT',
        /normalize false/,
      );
      await expectEngineError(
        engine.load(onCpu(tinyDir, { head: 'yes-no', yesNoTokenIds: [17, 512] })),
        'INVALID_ARGUMENT',
        /token id 512 is out of range/,
      );
      await expectEngineError(
        engine.load(onCpu(tinyDir, { head: 'yes-no' })),
        'INVALID_ARGUMENT',
        /yesNoTokenIds/,
      );
      await expectEngineError(
        engine.load(onCpu(tinyDir, { head: 'yes-no', yesNoTokenIds: [17] as unknown as [number, number] })),
        'INVALID_ARGUMENT',
        /yesNoTokenIds must be \[yes, no\]/,
      );
      await expectEngineError(
        engine.load(onCpu(tinyDir, { head: 'logits' as unknown as 'yes-no' })),
        'INVALID_ARGUMENT',
        /options\.head must be/,
      );
      await engine.dispose();
    });
  });

  it('rejects bad load options with INVALID_ARGUMENT', async () => {
    const engine = new NativeEngine();
    await expectEngineError(
      engine.load(onCpu(tinyDir, { dtype: 'bfloat16' })),
      'INVALID_ARGUMENT',
      /float32/,
    );
    await expectEngineError(
      engine.load(onCpu(tinyDir, { tensorParallelSize: 3 })),
      'INVALID_ARGUMENT',
      /tensorParallelSize 3/,
    );
    await expectEngineError(
      engine.load(onCpu(tinyDir, { cudaGraphMaxTokens: 100_000 })),
      'INVALID_ARGUMENT',
      /cudaGraphMaxTokens must be between 0 and 8192/,
    );
    await expectEngineError(
      engine.load(onCpu(tinyDir, { peerAllReduce: 'yes' as unknown as boolean })),
      'INVALID_ARGUMENT',
      /peerAllReduce must be a boolean/,
    );
    await expectEngineError(
      engine.load(onCpu(tinyDir, { idleSpinUs: -1 })),
      'INVALID_ARGUMENT',
      /idleSpinUs must be an integer >= 0/,
    );
    await expectEngineError(
      engine.load(onCpu(tinyDir, { idleSpinUs: 60_000_001 })),
      'INVALID_ARGUMENT',
      /idleSpinUs must be at most 60 s/,
    );
    await engine.dispose();
  });

  it('formats a row as JSON with the shortest digits that read back as the same float32', () => {
    const values = Float32Array.from({ length: 4096 }, (_, i) => Math.sin(i * 1.3) / (1 + (i % 97)));
    values[0] = 0;
    values[1] = Math.fround(0.0023064255);
    values[2] = 1e-40; // subnormal
    const text = sut.floatArrayJson(values);
    const parsed = JSON.parse(text) as number[];
    expect(parsed).toHaveLength(values.length);
    parsed.forEach((value, i) => expect(Math.fround(value)).toBe(values[i]));
    expect(text.startsWith('[0,0.0023064255,')).toBe(true);
    expect(text.length).toBeLessThan(JSON.stringify(Array.from(values)).length * 0.7);
    expect(sut.floatArrayJson(new Float32Array(0))).toBe('[]');
    expect(JSON.parse(sut.floatArrayJson(Float32Array.from([NaN, Infinity, 1])))).toEqual([null, null, 1]);
    expect(() => sut.floatArrayJson([1, 2] as unknown as Float32Array)).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
  });

  it('reports build facts and no CUDA devices on a CPU build', async () => {
    const build = sut.buildInfo();
    expect(typeof build.torchVersion).toBe('string');
    if (!build.cuda) expect(sut.cudaDevices()).toEqual([]);
    if (!build.nccl) await expectEngineError(sut.allReduceCheck([0]), 'DEVICE_FAILED', /no NCCL/);
    await expectEngineError(
      sut.allReduceCheck([0], 'yes' as unknown as boolean),
      'INVALID_ARGUMENT',
      /peerAllReduce must be a boolean/,
    );
  });

  it('fails every call cleanly before load and after dispose', async () => {
    const engine = new NativeEngine();
    await expectEngineError(engine.embed(batchOf([[1]], [64])), 'ENGINE_NOT_LOADED');
    expect(() => engine.info()).toThrow(expect.objectContaining({ code: 'ENGINE_NOT_LOADED' }));
    expect(engine.health().ok).toBe(false);

    await engine.load(onCpu(tinyDir));
    const inFlight = engine.embed(batchOf([[1, 2, 3]], [64]));
    await engine.dispose();
    await expect(inFlight).resolves.toHaveLength(64);

    await expectEngineError(engine.embed(batchOf([[1]], [64])), 'ENGINE_DISPOSED');
    expect(() => engine.info()).toThrow(expect.objectContaining({ code: 'ENGINE_DISPOSED' }));
    await expectEngineError(engine.load(onCpu(tinyDir)), 'ENGINE_DISPOSED');
    expect(engine.health()).toEqual({ ok: false, reason: 'the engine has been disposed' });
    await expect(engine.dispose()).resolves.toBeUndefined();
  });
});

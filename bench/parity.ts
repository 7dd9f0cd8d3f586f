/**
 * Parity against the Hugging Face reference: tokenizes the fixture's texts as the server does
 * (PromptTemplate + TokenizerService: encode without special tokens, append <|endoftext|> once),
 * checks the ids equal the ones transformers produced, embeds every text through the engine alone and
 * packed among 63 others at every fixture dimension, and reports the minimum cosine similarity to the
 * fp32 reference per dimension, plus alone vs packed (a text's embedding must not depend on its
 * batch).
 *
 *   node dist/bench/parity.js --model models/Qwen3-Embedding-tiny --fixture test/fixtures/parity-tiny.json \
 *     --device cuda --dtype bfloat16 --tp 1 [--threshold 0.999] [--json out.json] [--alone-every-dimension]
 *
 * A family fixture (scripts/reference/st_reference.py: any sentence-transformers directory; it has
 * `pooling`) is checked at the engine level: the engine is loaded with the fixture's pooling,
 * normalisation and Dense layers, and embeds the fixture's own token ids (what sentence-transformers
 * fed the model) with each query's prompt length where the pooling leaves the prompt out; the
 * tokenizer and prompts are test/families-parity.e2e-spec.ts's to check, through the service. Without
 * Normalize the vectors are compared by norm too.
 *
 *   node dist/bench/parity.js --model $WORK/families/bert-base --fixture parity-bert-base.json \
 *     --device cuda --dtype bfloat16 --skip-hash
 *
 * Exit status 0 when every cosine clears the threshold (0.99999 for float32, 0.999 otherwise) and the
 * token ids match; 1 otherwise. `runParity` is the same check for tests, over any EnginePort.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import type { EngineDevice, EngineDtype, EngineInfo, EnginePort, PackedBatch } from '@app/engine/engine.port';
import { packBatch, splitRows } from '@app/engine/packed-batch';
import { fromBase64 } from '@app/embeddings/embedding-encoding';
import { cosine, norm } from '@app/embeddings/embedding-similarity';
import { PromptTemplate } from '@app/embeddings/prompt-template';
import { TokenizerService } from '@app/embeddings/tokenizer.service';
import {
  assertFixtureWeights,
  ENGINE_CLI_OPTIONS,
  engineCliOptions,
  EngineCliOptions,
  runMain,
  runParityCli,
  weightsMismatches,
} from './parity-cli';

export interface ParityFixtureItem {
  id: string;
  kind: 'query' | 'document';
  instruction: string | null;
  text: string;
  /** The exact string the reference tokenized (prompt + text). */
  input: string;
  tokenIds: number[];
  /** Dimension -> base64 little-endian float32, truncated then L2-normalised (truncated only without Normalize). */
  embeddings: Record<string, string>;
  /** Family fixtures: the prompt's name in config_sentence_transformers.json (null: none, or a custom instruction). */
  promptName?: string | null;
  prompt?: string;
  /** Family fixtures: tokens of the prompt as sentence-transformers counts them (0 without a prompt). */
  promptLength?: number;
  /** Family fixtures: the input was longer than max_seq_length and cut to it. */
  truncated?: boolean;
}

export type FamilyPooling = 'lasttoken' | 'cls' | 'mean';

/** A Dense module of the sentence-transformers pipeline, as st_reference.py records it. */
export interface FixtureDenseLayer {
  path: string;
  inFeatures: number;
  outFeatures: number;
  bias: boolean;
  activation: string;
}

export interface ParityFixture {
  format: number;
  model: { name: string; hiddenSize: number; modelType?: string; weightsSha256?: Record<string, string> };
  reference?: Record<string, unknown>;
  eosTokenId: number | null;
  dimensions: number[];
  items: ParityFixtureItem[];
  agreement?: { ok?: boolean } & Record<string, unknown>;
  /** Family fixtures (st_reference.py) only, from here on. */
  name?: string;
  family?: string;
  /** The `admin checkpoint generate` arguments that made the checkpoint (no --out). */
  generator?: { command: string; args: string[] | null };
  pooling?: FamilyPooling;
  includePrompt?: boolean;
  normalize?: boolean;
  dense?: FixtureDenseLayer[];
  outputDimension?: number;
  maxSeqLength?: number;
}

/** The load options a family fixture's pipeline needs (issue 18's EngineLoadOptions fields). */
export interface FamilyLoadOptions {
  pooling: FamilyPooling;
  normalize: boolean;
  denseLayers: string[];
}

export function isFamilyFixture(fixture: ParityFixture): boolean {
  return typeof fixture.pooling === 'string';
}

/** Pooling, normalisation and Dense directories (absolute, modules.json order) for the engine. */
export function familyLoadOptions(fixture: ParityFixture, modelPath: string): FamilyLoadOptions {
  return {
    pooling: fixture.pooling ?? 'lasttoken',
    normalize: fixture.normalize ?? true,
    denseLayers: (fixture.dense ?? []).map((layer) => resolve(modelPath, layer.path)),
  };
}

export interface ParityOptions {
  /** A loaded engine. */
  engine: EnginePort;
  fixture: ParityFixture;
  /** Checkpoint directory: tokenizer.json and config_sentence_transformers.json come from it. */
  modelPath: string;
  /** Minimum cosine; default 0.99999 for float32 engines, 0.999 otherwise. */
  threshold?: number;
  /** Embed each text alone once per dimension (default: once, at the hidden size). */
  aloneEveryDimension?: boolean;
  /** Sequences in each packed batch (the text plus this many minus one others). */
  packedBatchSize?: number;
  onProgress?: (line: string) => void;
}

export interface ParityComparison {
  id: string;
  dimension: number;
  alone: number;
  packed: number;
  aloneVsPacked: number;
}

export interface ParityResult {
  model: string;
  device: EngineDevice;
  dtype: EngineDtype;
  tensorParallelSize: number;
  threshold: number;
  passed: boolean;
  problems: string[];
  tokenization: { checked: number; mismatches: Array<{ id: string; expected: number[]; actual: number[] }> };
  inputs: { mismatches: string[] };
  minCosine: { alone: number; packed: number; aloneVsPacked: number };
  /** Largest |norm / reference norm - 1| over every comparison; null when the model normalises. */
  maxNormError: number | null;
  perDimension: Record<string, { alone: number; packed: number; aloneVsPacked: number }>;
  /** The ten lowest comparisons. */
  worst: ParityComparison[];
  batches: { alone: number; packed: number; packedSequences: number; packedTokens: number };
  seconds: number;
}

export const FLOAT32_THRESHOLD = 0.99999;
export const REDUCED_PRECISION_THRESHOLD = 0.999;
/** Without Normalize the length counts too: |norm / reference norm - 1| at most this (fp32, else reduced). */
export const FLOAT32_NORM_TOLERANCE = 1e-4;
export const REDUCED_PRECISION_NORM_TOLERANCE = 2e-2;

interface PackedRequest {
  sequences: Int32Array[];
  dimensions: number[];
  /** Leading tokens mean pooling leaves out, per sequence (include_prompt=false); absent = none. */
  promptLengths?: number[];
}

/** Packs sequences back to back (no padding) and splits the engine's rows back out. */
async function embedPacked(engine: EnginePort, request: PackedRequest): Promise<Float32Array[]> {
  const batch: PackedBatch & { promptLengths?: Int32Array } = packBatch(
    request.sequences.map((tokens, index) => ({ tokens, dimensions: request.dimensions[index] })),
  );
  if (request.promptLengths) batch.promptLengths = Int32Array.from(request.promptLengths);
  const rows = await engine.embed(batch);
  const expected = request.dimensions.reduce((sum, d) => sum + d, 0);
  if (rows.length !== expected)
    throw new Error(`engine returned ${rows.length} floats, expected ${expected}`);
  return splitRows(rows, request.dimensions);
}

/** The parity check over a loaded engine. */
export async function runParity(options: ParityOptions): Promise<ParityResult> {
  const started = performance.now();
  const { engine, fixture } = options;
  const log = options.onProgress ?? (() => undefined);
  const info: EngineInfo = engine.info();
  const threshold =
    options.threshold ?? (info.dtype === 'float32' ? FLOAT32_THRESHOLD : REDUCED_PRECISION_THRESHOLD);
  const packedBatchSize = options.packedBatchSize ?? 64;
  const problems: string[] = [];
  const family = isFamilyFixture(fixture);
  const normalize = fixture.normalize ?? true;
  const normTolerance = info.dtype === 'float32' ? FLOAT32_NORM_TOLERANCE : REDUCED_PRECISION_NORM_TOLERANCE;
  // Dense layers change the output size (EngineInfo.outputDimension, issue 18); else the hidden size.
  const outputDimension = engineOutputDimension(info);
  const dims = fixture.dimensions.filter((d) => d <= outputDimension);
  if (fixture.model.hiddenSize !== info.hiddenSize) {
    problems.push(
      `the fixture is for hidden size ${fixture.model.hiddenSize}, the engine has ${info.hiddenSize}`,
    );
  }
  if (fixture.outputDimension !== undefined && fixture.outputDimension !== outputDimension) {
    problems.push(
      `the fixture's output dimension is ${fixture.outputDimension}, the engine's ${outputDimension}`,
    );
  }
  if (fixture.agreement?.ok === false)
    problems.push('the fixture records a disagreement between its HF paths');
  // Leading tokens the pooling leaves out: the prompt's, where the model excludes it.
  const promptLengths = fixture.items.map((item) =>
    family && fixture.includePrompt === false ? (item.promptLength ?? 0) : 0,
  );
  const excludesPrompt = promptLengths.some((length) => length > 0);

  // Inputs and token ids: exactly as the server builds them for Qwen3; a family fixture's own ids.
  const inputMismatches: string[] = [];
  let sequences: Int32Array[];
  if (family) {
    sequences = fixture.items.map((item) => Int32Array.from(item.tokenIds));
  } else {
    const prompts = await PromptTemplate.load(options.modelPath);
    const tokenizer = new TokenizerService();
    await tokenizer.load(join(options.modelPath, 'tokenizer.json'));
    const inputs = fixture.items.map((item) => {
      const prefix = prompts.prefix({
        inputType: item.kind,
        instruction: item.instruction ?? undefined,
      });
      const input = prefix + item.text;
      if (input !== item.input) inputMismatches.push(item.id);
      return input;
    });
    sequences = await tokenizer.encode(inputs);
  }
  const mismatches: ParityResult['tokenization']['mismatches'] = [];
  fixture.items.forEach((item, index) => {
    const actual = Array.from(sequences[index]);
    if (actual.length !== item.tokenIds.length || actual.some((id, i) => id !== item.tokenIds[i])) {
      mismatches.push({ id: item.id, expected: item.tokenIds, actual });
    }
  });
  if (inputMismatches.length > 0)
    problems.push(`prompt + text differs from the fixture for ${inputMismatches.join(', ')}`);
  if (mismatches.length > 0)
    problems.push(`token ids differ from transformers for ${mismatches.map((m) => m.id).join(', ')}`);
  log(
    family
      ? `${sequences.length} texts with the fixture's token ids (${fixture.pooling} pooling${excludesPrompt ? ', prompt excluded' : ''}, normalize ${normalize})`
      : `tokenized ${sequences.length} texts; ${mismatches.length} token-id mismatches`,
  );

  const references = fixture.items.map((item) =>
    Object.fromEntries(dims.map((d) => [d, fromBase64(item.embeddings[String(d)])])),
  );

  // Alone: one sequence per batch. The engine's Matryoshka step is truncate-then-normalise, so by
  // default one forward at the hidden size serves every dimension (the packed batches exercise the
  // engine's own truncation at every dimension); aloneEveryDimension asks the engine for each.
  const alone = fixture.items.map(() => new Map<number, Float32Array>());
  let aloneBatches = 0;
  for (let i = 0; i < fixture.items.length; i++) {
    if (options.aloneEveryDimension) {
      for (const d of dims) {
        const [row] = await embedPacked(engine, {
          sequences: [sequences[i]],
          dimensions: [d],
          promptLengths: excludesPrompt ? [promptLengths[i]] : undefined,
        });
        alone[i].set(d, Float32Array.from(row));
        aloneBatches += 1;
      }
    } else {
      const [row] = await embedPacked(engine, {
        sequences: [sequences[i]],
        dimensions: [outputDimension],
        promptLengths: excludesPrompt ? [promptLengths[i]] : undefined,
      });
      for (const d of dims) alone[i].set(d, normalize ? truncateAndNormalise(row, d) : row.slice(0, d));
      aloneBatches += 1;
    }
  }
  log(`embedded ${aloneBatches} single-sequence batches`);

  // Packed: batches of `packedBatchSize` sequences cycling through every text, dimensions rotated so
  // each text meets each dimension; every row in every batch is checked against its reference.
  const n = fixture.items.length;
  const packed = fixture.items.map(() => new Map<number, Float32Array[]>());
  let packedBatches = 0;
  let packedSequences = 0;
  let packedTokens = 0;
  const rounds = Math.max(dims.length, Math.ceil(n / packedBatchSize) * dims.length);
  for (let round = 0; round < rounds; round++) {
    const order: number[] = [];
    const start = (round * 7) % n;
    for (let k = 0; k < packedBatchSize; k++) order.push((start + k * (round % 2 === 0 ? 1 : n - 1)) % n);
    // First occurrence: dimension (item + round), so over dims.length rounds each text meets each
    // dimension; repeats in the same batch take the next one.
    const dimensions = order.map((item, k) => dims[(item + round + (k >= n ? 1 : 0)) % dims.length]);
    const rows = await embedPacked(engine, {
      sequences: order.map((i) => sequences[i]),
      dimensions,
      promptLengths: excludesPrompt ? order.map((i) => promptLengths[i]) : undefined,
    });
    order.forEach((item, k) => {
      const list = packed[item].get(dimensions[k]) ?? [];
      list.push(Float32Array.from(rows[k]));
      packed[item].set(dimensions[k], list);
    });
    packedBatches += 1;
    packedSequences += order.length;
    packedTokens += order.reduce((sum, i) => sum + sequences[i].length, 0);
  }
  log(`embedded ${packedBatches} packed batches (${packedSequences} sequences, ${packedTokens} tokens)`);

  const comparisons: ParityComparison[] = [];
  let maxNormError = 0;
  const perDimension: ParityResult['perDimension'] = {};
  for (const d of dims) perDimension[String(d)] = { alone: 1, packed: 1, aloneVsPacked: 1 };
  fixture.items.forEach((item, i) => {
    for (const d of dims) {
      const reference = references[i][d];
      const single = alone[i].get(d)!;
      const packedRows = packed[i].get(d) ?? [];
      const packedCos =
        packedRows.length > 0 ? Math.min(...packedRows.map((row) => cosine(row, reference))) : NaN;
      const crossCos =
        packedRows.length > 0 ? Math.min(...packedRows.map((row) => cosine(row, single))) : NaN;
      if (!normalize) {
        const expected = norm(reference);
        for (const row of [single, ...packedRows])
          maxNormError = Math.max(maxNormError, Math.abs(norm(row) / expected - 1));
      }
      const comparison = {
        id: item.id,
        dimension: d,
        alone: cosine(single, reference),
        packed: packedCos,
        aloneVsPacked: crossCos,
      };
      comparisons.push(comparison);
      const slot = perDimension[String(d)];
      slot.alone = minimum(slot.alone, comparison.alone);
      slot.packed = minimum(slot.packed, comparison.packed);
      slot.aloneVsPacked = minimum(slot.aloneVsPacked, comparison.aloneVsPacked);
    }
  });
  const unpacked = comparisons.filter((c) => Number.isNaN(c.packed));
  if (unpacked.length > 0) problems.push(`${unpacked.length} (text, dimension) pairs never ran packed`);
  const minCosine = {
    alone: Math.min(...comparisons.map((c) => c.alone)),
    packed: Math.min(...comparisons.filter((c) => !Number.isNaN(c.packed)).map((c) => c.packed)),
    aloneVsPacked: Math.min(
      ...comparisons.filter((c) => !Number.isNaN(c.aloneVsPacked)).map((c) => c.aloneVsPacked),
    ),
  };
  const score = (c: ParityComparison): number => minimum(minimum(c.alone, c.packed), c.aloneVsPacked);
  const worst = [...comparisons].sort((a, b) => score(a) - score(b)).slice(0, 10);
  const failing = comparisons.filter((c) => !(score(c) >= threshold));
  if (failing.length > 0) {
    problems.push(
      `${failing.length} comparisons below ${threshold}, worst ${worst[0].id} at ${worst[0].dimension} dims (${score(worst[0]).toFixed(6)})`,
    );
  }
  if (!normalize && !(maxNormError <= normTolerance)) {
    problems.push(
      `vector lengths differ from the reference by up to ${maxNormError.toExponential(2)} (tolerance ${normTolerance})`,
    );
  }
  return {
    model: fixture.model.name,
    device: info.device,
    dtype: info.dtype,
    tensorParallelSize: info.tensorParallelSize,
    threshold,
    passed: problems.length === 0,
    problems,
    tokenization: { checked: fixture.items.length, mismatches },
    inputs: { mismatches: inputMismatches },
    minCosine,
    maxNormError: normalize ? null : maxNormError,
    perDimension,
    worst,
    batches: { alone: aloneBatches, packed: packedBatches, packedSequences, packedTokens },
    seconds: (performance.now() - started) / 1000,
  };
}

/** The engine's output size: its last Dense layer's out_features when it reports one, else the hidden size. */
export function engineOutputDimension(info: EngineInfo): number {
  const reported = (info as EngineInfo & { outputDimension?: number }).outputDimension;
  return typeof reported === 'number' && reported > 0 ? reported : info.hiddenSize;
}

export function truncateAndNormalise(row: Float32Array, dimensions: number): Float32Array {
  const length = norm(row.subarray(0, dimensions));
  const out = new Float32Array(dimensions);
  for (let i = 0; i < dimensions; i++) out[i] = length > 0 ? row[i] / length : row[i];
  return out;
}

function minimum(a: number, b: number): number {
  if (Number.isNaN(a)) return b;
  if (Number.isNaN(b)) return a;
  return Math.min(a, b);
}

export function formatParity(result: ParityResult): string {
  const f = (x: number): string => (Number.isFinite(x) ? x.toFixed(7) : '   -   ');
  const lines = [
    `parity ${result.model}  ${result.device} ${result.dtype} tp${result.tensorParallelSize}  threshold ${result.threshold}`,
    `tokenization  ${result.tokenization.checked - result.tokenization.mismatches.length}/${result.tokenization.checked} match transformers`,
    `dims    alone      packed     alone-vs-packed   (min cosine)`,
    ...Object.entries(result.perDimension).map(
      ([d, m]) => `${d.padEnd(7)} ${f(m.alone)}  ${f(m.packed)}  ${f(m.aloneVsPacked)}`,
    ),
    `worst   ${result.worst
      .slice(0, 3)
      .map((c) => `${c.id}@${c.dimension} (${f(Math.min(c.alone, c.packed, c.aloneVsPacked))})`)
      .join(', ')}`,
    ...(result.maxNormError !== null
      ? [`norms   max |norm / reference - 1| ${result.maxNormError.toExponential(2)}`]
      : []),
    `batches ${result.batches.alone} alone, ${result.batches.packed} packed (${result.batches.packedSequences} sequences, ${result.batches.packedTokens} tokens) in ${result.seconds.toFixed(1)} s`,
    ...result.problems.map((problem) => `problem ${problem}`),
    result.passed ? 'PASS' : 'FAIL',
  ];
  return lines.join('\n');
}

export function readFixture(path: string): ParityFixture {
  const fixture = JSON.parse(readFileSync(path, 'utf8')) as ParityFixture;
  if (!Array.isArray(fixture.items) || !Array.isArray(fixture.dimensions)) {
    throw new Error(`${path} is not a parity fixture (items, dimensions)`);
  }
  return fixture;
}

/** Checks the fixture was made from these weights (sha256 of each safetensors file). */
export function weightsMatchFixture(modelPath: string, fixture: ParityFixture): Promise<string[]> {
  return weightsMismatches(modelPath, fixture.model.weightsSha256);
}

type CliOptions = EngineCliOptions & { aloneEveryDimension: boolean };

export function parseCli(argv: string[]): CliOptions {
  const { values } = parseArgs({
    args: argv,
    options: { ...ENGINE_CLI_OPTIONS, 'alone-every-dimension': { type: 'boolean', default: false } },
  });
  return {
    ...engineCliOptions(
      values,
      'usage: parity --model <dir> --fixture <json> [--device cpu|cuda] [--dtype float32|bfloat16|float16] [--tp n] [--device-ids 0,1] [--threshold x] [--json out.json] [--addon path] [--skip-hash] [--alone-every-dimension]\n',
    ),
    aloneEveryDimension: values['alone-every-dimension'],
  };
}

async function main(): Promise<void> {
  const options = parseCli(process.argv.slice(2));
  const fixture = readFixture(options.fixture);
  await assertFixtureWeights(options, fixture.model.weightsSha256);
  // A family fixture states its pipeline; the engine gets it as issue 18's load options.
  await runParityCli(
    options,
    isFamilyFixture(fixture) ? familyLoadOptions(fixture, options.model) : {},
    (engine) =>
      runParity({
        engine,
        fixture,
        modelPath: options.model,
        threshold: options.threshold,
        aloneEveryDimension: options.aloneEveryDimension,
        onProgress: (line) => process.stderr.write(`${line}\n`),
      }),
    formatParity,
  );
}

if (require.main === module) runMain('parity', main);

/**
 * Reranker parity against the model card's transformers code (scripts/reference/rerank_reference.py
 * over test/fixtures/rerank-pairs.json): loads the engine with the fixture's score head (the yes/no
 * rows of the LM head, or a sequence classifier's score layer), feeds every pair's token ids as
 * transformers built them, turns each raw logit into sigmoid(raw) as the service does, and reports the
 * largest |score - reference| and |raw - reference raw|, and per group whether the documents come out
 * in the reference's order (with Kendall's tau). Each pair runs alone and packed with the rest of its
 * group, as one rerank request is batched; the two must agree too.
 *
 *   node dist/bench/rerank-parity.js --model $WORK/rerankers/qwen3-reranker-tiny \
 *     --fixture test/fixtures/rerank-qwen3-reranker-tiny.json --device cpu
 *   node dist/bench/rerank-parity.js --model $WORK/rerankers/qwen3-reranker-4b --fixture ref.json \
 *     --device cuda --dtype bfloat16 --skip-hash [--threshold 0.01] [--json out.json]
 *
 * Exit status 0 when every score is within the threshold (1e-5 for float32, 0.01 otherwise) of the
 * reference, alone and packed; 1 otherwise. `runRerankParity` is the same check for tests, over any
 * EnginePort.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import type {
  EngineDevice,
  EngineDtype,
  EngineHead,
  EngineLoadOptions,
  EnginePort,
} from '@app/engine/engine.port';
import { packBatch } from '@app/engine/packed-batch';
import {
  assertFixtureWeights,
  ENGINE_CLI_OPTIONS,
  engineCliOptions,
  EngineCliOptions,
  runMain,
  runParityCli,
  weightsMismatches,
} from './parity-cli';

export interface RerankFixtureItem {
  document: string;
  /** prefix + (cut) instruction/query/document + suffix, as the model card's process_inputs built them. */
  tokenIds: number[];
  truncated: boolean;
  /** null for a classifier head. */
  logitYes: number | null;
  logitNo: number | null;
  /** logit_yes - logit_no, or the classifier's logit. */
  raw: number;
  score: number;
}

export interface RerankFixtureGroup {
  query: string;
  instruction: string | null;
  items: RerankFixtureItem[];
}

export interface RerankFixture {
  name: string;
  /** The `admin checkpoint generate` arguments that made the checkpoint (no --out). */
  generatorArgs: string | null;
  reference: string;
  maxLength: number;
  head: Exclude<EngineHead, 'embedding'>;
  yesTokenId: number | null;
  noTokenId: number | null;
  groups: RerankFixtureGroup[];
  model?: { name?: string; weightsSha256?: Record<string, string> };
  agreement?: { ok?: boolean } & Record<string, unknown>;
}

/** rerank-pairs.json: what the fixture was made from. */
export interface RerankPairs {
  groups: Array<{ query: string; instruction?: string; documents: string[] }>;
}

export interface RerankParityOptions {
  /** A loaded engine (rerankLoadOptions). */
  engine: EnginePort;
  fixture: RerankFixture;
  /** When given, the fixture's queries, instructions and documents must be these. */
  pairs?: RerankPairs;
  /** Largest |score - reference| allowed; default 1e-5 for float32 engines, 0.01 otherwise. */
  threshold?: number;
  onProgress?: (line: string) => void;
}

export interface RerankGroupResult {
  group: number;
  query: string;
  documents: number;
  maxScoreError: number;
  maxRawError: number;
  /** Documents by the engine's score in the reference's order (ties: lower index first). */
  sameOrder: boolean;
  kendallTau: number;
  referenceOrder: number[];
  order: number[];
}

export interface RerankWorst {
  group: number;
  document: number;
  score: number;
  reference: number;
  error: number;
}

export interface RerankParityResult {
  model: string;
  device: EngineDevice;
  dtype: EngineDtype;
  tensorParallelSize: number;
  head: string;
  threshold: number;
  passed: boolean;
  problems: string[];
  pairs: number;
  truncated: number;
  /** Engine alone vs the reference. */
  maxScoreError: number;
  maxRawError: number;
  /** Each group packed in one batch vs the same pairs alone. */
  maxPackedScoreError: number;
  maxAloneVsPacked: number;
  groupsInOrder: number;
  minKendallTau: number;
  groups: RerankGroupResult[];
  /** The five largest score errors. */
  worst: RerankWorst[];
  batches: { alone: number; packed: number; tokens: number };
  seconds: number;
}

export const FLOAT32_SCORE_THRESHOLD = 1e-5;
export const REDUCED_PRECISION_SCORE_THRESHOLD = 0.01;

/** relevance_score = sigmoid(raw) = softmax([logit_yes, logit_no])[0]. */
export function sigmoid(raw: number): number {
  return raw >= 0 ? 1 / (1 + Math.exp(-raw)) : Math.exp(raw) / (1 + Math.exp(raw));
}

/** Document indices by score, highest first; ties keep the lower index first (as the API sorts). */
export function ranking(scores: readonly number[]): number[] {
  return scores.map((_, index) => index).sort((a, b) => scores[b] - scores[a] || a - b);
}

/** Kendall's tau-b between two score lists over the same documents (1: the same order). */
export function kendallTau(a: readonly number[], b: readonly number[]): number {
  let concordant = 0;
  let discordant = 0;
  let tiesA = 0;
  let tiesB = 0;
  for (let i = 0; i < a.length; i++) {
    for (let j = i + 1; j < a.length; j++) {
      const da = Math.sign(a[i] - a[j]);
      const db = Math.sign(b[i] - b[j]);
      if (da === 0 && db === 0) continue;
      if (da === 0) tiesA += 1;
      else if (db === 0) tiesB += 1;
      else if (da === db) concordant += 1;
      else discordant += 1;
    }
  }
  const denominator = Math.sqrt((concordant + discordant + tiesA) * (concordant + discordant + tiesB));
  return denominator > 0 ? (concordant - discordant) / denominator : 1;
}

/** What the engine needs to score like the fixture's reference: its head, last-token pooling, no normalisation. */
export function rerankLoadOptions(
  fixture: RerankFixture,
): Pick<EngineLoadOptions, 'head' | 'yesNoTokenIds' | 'pooling' | 'normalize' | 'denseLayers'> {
  if (fixture.head === 'yes-no' && (fixture.yesTokenId === null || fixture.noTokenId === null)) {
    throw new Error(`the fixture's head is yes-no but it names no yes/no token ids`);
  }
  return {
    head: fixture.head,
    ...(fixture.head === 'yes-no' ? { yesNoTokenIds: [fixture.yesTokenId!, fixture.noTokenId!] } : {}),
    pooling: 'lasttoken',
    normalize: false,
    denseLayers: [],
  };
}

/** Problems where the fixture's groups are not the pairs file's (both sides must read one truth). */
export function pairsMismatches(fixture: RerankFixture, pairs: RerankPairs): string[] {
  const problems: string[] = [];
  if (pairs.groups.length !== fixture.groups.length) {
    problems.push(`the fixture has ${fixture.groups.length} groups, the pairs file ${pairs.groups.length}`);
  }
  fixture.groups.forEach((group, g) => {
    const expected = pairs.groups[g];
    if (!expected) return;
    const documents = group.items.map((item) => item.document);
    if (
      group.query !== expected.query ||
      (group.instruction ?? null) !== (expected.instruction ?? null) ||
      documents.length !== expected.documents.length ||
      documents.some((document, d) => document !== expected.documents[d])
    ) {
      problems.push(`group ${g} differs from the pairs file (query, instruction or documents)`);
    }
  });
  return problems;
}

/** One raw logit per sequence, packed back to back (dimensions 1: a score head's row is one float). */
async function scorePacked(engine: EnginePort, sequences: Int32Array[]): Promise<Float32Array> {
  const raws = await engine.embed(packBatch(sequences.map((tokens) => ({ tokens, dimensions: 1 }))));
  if (raws.length !== sequences.length) {
    throw new Error(`engine returned ${raws.length} floats for ${sequences.length} sequences`);
  }
  return raws;
}

/** The parity check over a loaded engine. */
export async function runRerankParity(options: RerankParityOptions): Promise<RerankParityResult> {
  const started = performance.now();
  const { engine, fixture } = options;
  const log = options.onProgress ?? (() => undefined);
  const info = engine.info();
  const threshold =
    options.threshold ??
    (info.dtype === 'float32' ? FLOAT32_SCORE_THRESHOLD : REDUCED_PRECISION_SCORE_THRESHOLD);
  const problems: string[] = [];
  if (info.head !== fixture.head) {
    problems.push(`the engine's head is ${String(info.head)}, the fixture's ${fixture.head}`);
  }
  if (fixture.agreement?.ok === false) {
    problems.push("the fixture records a disagreement between the reference's alone and batched scores");
  }
  if (options.pairs) problems.push(...pairsMismatches(fixture, options.pairs));

  const groups: RerankGroupResult[] = [];
  const errors: RerankWorst[] = [];
  let maxRawError = 0;
  let maxPackedScoreError = 0;
  let maxAloneVsPacked = 0;
  let aloneBatches = 0;
  let tokens = 0;
  for (const [g, group] of fixture.groups.entries()) {
    const sequences = group.items.map((item) => Int32Array.from(item.tokenIds));
    tokens += 2 * sequences.reduce((sum, sequence) => sum + sequence.length, 0);
    const alone: number[] = [];
    for (const sequence of sequences) {
      alone.push((await scorePacked(engine, [sequence]))[0]);
      aloneBatches += 1;
    }
    const packed = Array.from(await scorePacked(engine, sequences));
    const scores = alone.map(sigmoid);
    const references = group.items.map((item) => item.score);
    let groupScoreError = 0;
    let groupRawError = 0;
    group.items.forEach((item, d) => {
      const error = Math.abs(scores[d] - item.score);
      errors.push({ group: g, document: d, score: scores[d], reference: item.score, error });
      groupScoreError = Math.max(groupScoreError, error);
      groupRawError = Math.max(groupRawError, Math.abs(alone[d] - item.raw));
      maxPackedScoreError = Math.max(maxPackedScoreError, Math.abs(sigmoid(packed[d]) - item.score));
      maxAloneVsPacked = Math.max(maxAloneVsPacked, Math.abs(sigmoid(packed[d]) - scores[d]));
    });
    maxRawError = Math.max(maxRawError, groupRawError);
    const referenceOrder = ranking(references);
    const order = ranking(scores);
    groups.push({
      group: g,
      query: group.query,
      documents: group.items.length,
      maxScoreError: groupScoreError,
      maxRawError: groupRawError,
      sameOrder: order.every((index, k) => index === referenceOrder[k]),
      kendallTau: kendallTau(scores, references),
      referenceOrder,
      order,
    });
    log(
      `group ${g}: ${group.items.length} documents, max |score - reference| ${groupScoreError.toExponential(2)}`,
    );
  }
  const maxScoreError = Math.max(0, ...errors.map((entry) => entry.error));
  const worst = [...errors].sort((a, b) => b.error - a.error).slice(0, 5);
  if (!(maxScoreError <= threshold)) {
    problems.push(
      `scores differ from the reference by up to ${maxScoreError.toExponential(2)} (threshold ${threshold}), worst group ${worst[0].group} document ${worst[0].document}`,
    );
  }
  if (!(maxPackedScoreError <= threshold)) {
    problems.push(
      `packed scores differ from the reference by up to ${maxPackedScoreError.toExponential(2)} (threshold ${threshold})`,
    );
  }
  const items = fixture.groups.flatMap((group) => group.items);
  return {
    model: fixture.name,
    device: info.device,
    dtype: info.dtype,
    tensorParallelSize: info.tensorParallelSize,
    head: String(info.head),
    threshold,
    passed: problems.length === 0,
    problems,
    pairs: items.length,
    truncated: items.filter((item) => item.truncated).length,
    maxScoreError,
    maxRawError,
    maxPackedScoreError,
    maxAloneVsPacked,
    groupsInOrder: groups.filter((group) => group.sameOrder).length,
    minKendallTau: Math.min(1, ...groups.map((group) => group.kendallTau)),
    groups,
    worst,
    batches: { alone: aloneBatches, packed: fixture.groups.length, tokens },
    seconds: (performance.now() - started) / 1000,
  };
}

export function formatRerankParity(result: RerankParityResult): string {
  const e = (x: number): string => x.toExponential(2);
  const lines = [
    `rerank parity ${result.model}  ${result.device} ${result.dtype} tp${result.tensorParallelSize}  head ${result.head}  threshold ${result.threshold}`,
    `pairs   ${result.pairs} (${result.truncated} cut at the length limit) in ${result.groups.length} groups`,
    `scores  max |score - reference| ${e(result.maxScoreError)} alone, ${e(result.maxPackedScoreError)} packed; max |raw - reference| ${e(result.maxRawError)}; alone vs packed ${e(result.maxAloneVsPacked)}`,
    `order   ${result.groupsInOrder}/${result.groups.length} groups in the reference's order, min Kendall tau ${result.minKendallTau.toFixed(3)}`,
    ...result.groups.map(
      (group) =>
        `  group ${String(group.group).padEnd(2)} ${String(group.documents).padStart(2)} docs  max |score| ${e(group.maxScoreError)}  ${group.sameOrder ? 'same order' : `order ${group.order.join(',')} vs ${group.referenceOrder.join(',')}`}  tau ${group.kendallTau.toFixed(3)}  ${JSON.stringify(group.query.slice(0, 40))}`,
    ),
    `worst   ${result.worst
      .slice(0, 3)
      .map((w) => `g${w.group}/d${w.document} ${w.score.toFixed(6)} vs ${w.reference.toFixed(6)}`)
      .join(', ')}`,
    `batches ${result.batches.alone} alone, ${result.batches.packed} packed (${result.batches.tokens} tokens) in ${result.seconds.toFixed(1)} s`,
    ...result.problems.map((problem) => `problem ${problem}`),
    result.passed ? 'PASS' : 'FAIL',
  ];
  return lines.join('\n');
}

export function readRerankFixture(path: string): RerankFixture {
  const fixture = JSON.parse(readFileSync(path, 'utf8')) as RerankFixture;
  if (!Array.isArray(fixture.groups) || (fixture.head !== 'yes-no' && fixture.head !== 'classifier')) {
    throw new Error(`${path} is not a rerank fixture (groups, head yes-no or classifier)`);
  }
  return fixture;
}

/** Checks the fixture was made from these weights (sha256 of each weight file it lists). */
export function rerankWeightsMatch(modelPath: string, fixture: RerankFixture): Promise<string[]> {
  return weightsMismatches(modelPath, fixture.model?.weightsSha256);
}

type CliOptions = EngineCliOptions & { pairs?: string };

export function parseCli(argv: string[]): CliOptions {
  const { values } = parseArgs({ args: argv, options: { ...ENGINE_CLI_OPTIONS, pairs: { type: 'string' } } });
  const options = engineCliOptions(
    values,
    'usage: rerank-parity --model <dir> --fixture <json> [--pairs test/fixtures/rerank-pairs.json] [--device cpu|cuda] [--dtype float32|bfloat16|float16] [--tp n] [--device-ids 0,1] [--threshold x] [--json out.json] [--addon path] [--skip-hash]\n',
  );
  if (options.threshold !== undefined && !(options.threshold > 0))
    throw new Error('--threshold must be a positive number');
  return { ...options, pairs: values.pairs };
}

async function main(): Promise<void> {
  const options = parseCli(process.argv.slice(2));
  const fixture = readRerankFixture(options.fixture);
  await assertFixtureWeights(options, fixture.model?.weightsSha256);
  const pairsPath = options.pairs ?? join('test', 'fixtures', 'rerank-pairs.json');
  const pairs = existsSync(pairsPath)
    ? (JSON.parse(readFileSync(pairsPath, 'utf8')) as RerankPairs)
    : undefined;
  if (!pairs && options.pairs) throw new Error(`${options.pairs} does not exist`);
  await runParityCli(
    options,
    rerankLoadOptions(fixture),
    (engine) =>
      runRerankParity({
        engine,
        fixture,
        pairs,
        threshold: options.threshold,
        onProgress: (line) => process.stderr.write(`${line}\n`),
      }),
    formatRerankParity,
  );
}

if (require.main === module) runMain('rerank-parity', main);

import { ModelRegistry } from '@app/embeddings/model-registry';
/**
 * The server's own time per request for short inputs: everything but the engine's forward. The real
 * API app (`createApp`, as apps/api starts it: bearer auth with a key, the validation pipe, pino
 * request logs at `info`, metrics, request ids, the real Qwen3 tokenizer, the batcher) runs in a child
 * process over a FAKE engine that answers at once with fixed unit rows (float rows still go through
 * the addon's native formatter, NativeFloatArrayFormatter, when it is built), so what is measured is the server alone, never a
 * model. One keep-alive client sends the requests one at a time; 1 and 8 texts of 16 tokens (with the
 * appended end-of-text), float and base64, 2560 dimensions.
 *
 * Reported per point: the client's latency (request written to last body byte), the server's (its
 * 'request' event to the response's 'finish'), and from the service's own timings the tokenization and
 * the queue wait. With several `--server label=path` (a built server-overhead.js of another checkout),
 * each is run in turn, round by round, in this one run, and compared with the first.
 *
 * With `--engine-ms N` the fake engine answers after N ms (a timer), as a GPU forward keeps the
 * server waiting between a request's steps; the server's time outside the engine is then reported
 * beside its total (the total less the service's own inference time). `--busy-poll` runs the servers
 * with BUSY_POLL=true (and BUSY_POLL_LINGER_MS as the environment or .env sets it: loadBenchConfig).
 *
 *   node dist/bench/server-overhead.js [--points 1xfloat,1xbase64,8xfloat,8xbase64]
 *        [--requests 2000] [--warmup 300] [--rounds 5] [--engine-ms 0] [--busy-poll]
 *        [--server label=path ...] [--addon build/native/Release/qwen3_embed.node] [--json out.json]
 */
import { ChildProcess, fork } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { DEFAULT_QUERY_PROMPT, writeTokenizerOnlyModel } from '@app/checkpoint';
import { EngineInfo, EnginePort, PackedBatch } from '@app/engine/engine.port';
import { NativeFloatArrayFormatter } from '@app/engine/float-array-formatter';
import { NativeEngine } from '@app/engine/native-engine';
import { createApp } from '@app/api/app.factory';
import { loadBenchConfig } from '@app/config';
import { keepAliveAgent, send } from './http-client';
import { percentile } from './latency-summary';

/** Short queries of 16 tokens each with the appended `<|endoftext|>` (Qwen3 tokenizer). */
export const SHORT_TEXTS: readonly string[] = [
  'How many people actually live in the capital city of France these days now?',
  'What is the boiling point of water at the very top of Mount Everest?',
  'What is the best way to cache embeddings for a large document search index?',
  'Why does my homemade sourdough bread always collapse after the second rise?',
  'Which popular programming languages can compile directly to small WebAssembly modules right now?',
  'Common symptoms of vitamin D deficiency in older adults during the long dark winter months',
  'How do I replace the old battery of a ten year old laptop myself?',
  'Cheapest train route from Berlin to Vienna with just one night stop in Prague',
];
export const TOKENS_PER_TEXT = 16;
const HIDDEN = 2560;
const API_KEY = 'sk-bench-server-overhead';

export interface BenchPoint {
  texts: number;
  encoding: 'float' | 'base64';
}

export const POINTS: readonly BenchPoint[] = [
  { texts: 1, encoding: 'float' },
  { texts: 1, encoding: 'base64' },
  { texts: 8, encoding: 'float' },
  { texts: 8, encoding: 'base64' },
];

export function requestBody(point: BenchPoint): string {
  const texts = SHORT_TEXTS.slice(0, point.texts);
  return JSON.stringify({
    model: 'Qwen3-Embedding-4B',
    input: texts.length === 1 ? texts[0] : texts,
    encoding_format: point.encoding,
  });
}

/** A unit row of `width` values shaped like an embedding (small values of both signs). */
export function unitRow(width: number, seed = 1): Float32Array {
  let state = seed;
  const row = new Float32Array(width);
  let norm = 0;
  for (let index = 0; index < width; index += 1) {
    state = (state * 1103515245 + 12345) % 2147483648;
    row[index] = state / 2147483648 - 0.5;
    norm += row[index] * row[index];
  }
  const scale = 1 / Math.sqrt(norm);
  return row.map((value) => value * scale);
}

const INSTANT_INFO: EngineInfo = {
  modelPath: 'Qwen3-Embedding-4B',
  modelType: 'qwen3',
  hiddenSize: HIDDEN,
  head: 'embedding',
  outputDimension: HIDDEN,
  numLayers: 36,
  numAttentionHeads: 32,
  numKeyValueHeads: 8,
  headDim: 128,
  intermediateSize: 9728,
  vocabSize: 151665,
  maxPositionEmbeddings: 32768,
  parameters: 4_021_774_336,
  device: 'cpu',
  dtype: 'float32',
  tensorParallelSize: 1,
  replicas: 1,
  cudaGraphMaxTokens: 0,
  peerAllReduce: false,
  devices: [{ index: -1, name: 'cpu', totalMemoryBytes: 1, usedMemoryBytes: 1, replica: 0, rank: 0 }],
};

/**
 * A fake engine for this bench only: the 4B model's description, and every batch answered at once
 * (or after `delayMs`, by a timer) with copies of one unit row (its first `dimensions` values,
 * re-normalised as the engine would).
 */
export class InstantEngine extends EnginePort {
  private readonly row = unitRow(HIDDEN);
  private readonly prefixNorms = new Map<number, number>();

  constructor(private readonly delayMs = 0) {
    super();
  }

  load(): Promise<EngineInfo> {
    return Promise.resolve(this.info());
  }

  info(): EngineInfo {
    return structuredClone(INSTANT_INFO);
  }

  health(): { ok: boolean } {
    return { ok: true };
  }

  dispose(): Promise<void> {
    return Promise.resolve();
  }

  embed(batch: PackedBatch): Promise<Float32Array> {
    let total = 0;
    for (const dimensions of batch.dimensions) total += dimensions;
    const rows = new Float32Array(total);
    let offset = 0;
    for (const dimensions of batch.dimensions) {
      const scale = 1 / this.prefixNorm(dimensions);
      for (let index = 0; index < dimensions; index += 1) rows[offset + index] = this.row[index] * scale;
      offset += dimensions;
    }
    if (this.delayMs <= 0) return Promise.resolve(rows);
    return new Promise((resolve) => setTimeout(() => resolve(rows), this.delayMs));
  }

  private prefixNorm(dimensions: number): number {
    let norm = this.prefixNorms.get(dimensions);
    if (norm === undefined) {
      norm = Math.hypot(...this.row.subarray(0, dimensions));
      this.prefixNorms.set(dimensions, norm);
    }
    return norm;
  }
}

export interface Quantiles {
  p50: number;
  p90: number;
}

export function quantiles(samples: readonly number[]): Quantiles {
  const sorted = [...samples].sort((a, b) => a - b);
  return { p50: percentile(sorted, 0.5), p90: percentile(sorted, 0.9) };
}

/** What the server process measured of each request (milliseconds). */
export interface ServerStages {
  server: number[];
  tokenization: number[];
  queue: number[];
  inference: number[];
}

export interface PointResult extends BenchPoint {
  server: string;
  requests: number;
  clientMs: Quantiles;
  serverMs: Quantiles;
  tokenizationMs: Quantiles;
  queueMs: Quantiles;
  /** The server's time less the service's inference time, request by request. */
  outsideEngineMs: Quantiles;
}

export interface ServerSpec {
  label: string;
  script: string;
}

export interface BenchOptions {
  points: BenchPoint[];
  requests: number;
  warmup: number;
  rounds: number;
  servers: ServerSpec[];
  addon?: string;
  json?: string;
  /** How long the fake engine takes to answer (0: at once). */
  engineMs: number;
  /** The servers run with BUSY_POLL=true. */
  busyPoll: boolean;
}

/** `1xfloat,8xbase64`: the points to run (default all). */
export function parsePoints(value: string): BenchPoint[] {
  return value.split(',').map((item) => {
    const match = /^(\d+)x(float|base64)$/.exec(item.trim());
    const texts = Number(match?.[1]);
    if (!match || texts < 1 || texts > SHORT_TEXTS.length) {
      throw new Error(
        `--points: expected e.g. 1xfloat,8xbase64 (1..${SHORT_TEXTS.length} texts), got ${item}`,
      );
    }
    return { texts, encoding: match[2] as BenchPoint['encoding'] };
  });
}

/** `label=path` or a bare path (labelled by its position). */
export function parseServerSpec(value: string, index: number): ServerSpec {
  const at = value.indexOf('=');
  return at > 0
    ? { label: value.slice(0, at), script: value.slice(at + 1) }
    : { label: `server${index}`, script: value };
}

function wholeNumber(name: string, raw: string | undefined, fallback: number): number {
  const parsed = raw === undefined ? fallback : Number(raw);
  if (!Number.isInteger(parsed) || parsed < 0) throw new Error(`${name} must be a whole number, got ${raw}`);
  return parsed;
}

/** The command line, both the client's and the `--serve` child's (which is given only its own flags). */
function parseCommandLine(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    options: {
      points: { type: 'string' },
      requests: { type: 'string' },
      warmup: { type: 'string' },
      rounds: { type: 'string' },
      server: { type: 'string', multiple: true },
      addon: { type: 'string' },
      json: { type: 'string' },
      'engine-ms': { type: 'string' },
      'busy-poll': { type: 'boolean', default: false },
      serve: { type: 'boolean', default: false },
    },
  }).values;
}

export function parseOptions(argv: readonly string[], self: string, defaultAddon?: string): BenchOptions {
  const values = parseCommandLine(argv);
  const servers = (values.server ?? []).map((spec, index) => parseServerSpec(spec, index));
  return {
    points: values.points === undefined ? [...POINTS] : parsePoints(values.points),
    requests: wholeNumber('--requests', values.requests, 2000),
    warmup: wholeNumber('--warmup', values.warmup, 300),
    rounds: Math.max(1, wholeNumber('--rounds', values.rounds, 5)),
    servers: servers.length > 0 ? servers : [{ label: 'this', script: self }],
    addon: values.addon ?? defaultAddon,
    json: values.json,
    engineMs: wholeNumber('--engine-ms', values['engine-ms'], 0),
    busyPoll: values['busy-poll'],
  };
}

/**
 * Each request's server time less its inference time (the stages of one request sit at the same
 * index: one request at a time, each recorded once).
 */
export function outsideEngine(stages: Pick<ServerStages, 'server' | 'inference'>): number[] {
  const count = Math.min(stages.server.length, stages.inference.length);
  return Array.from({ length: count }, (_, i) => stages.server[i] - stages.inference[i]);
}

/** "1.23 / 4.56" with a ratio against a baseline when given. */
export function formatQuantiles(value: Quantiles, baseline?: Quantiles): string {
  const text = `${value.p50.toFixed(3)} / ${value.p90.toFixed(3)}`;
  return baseline ? `${text} (${(value.p50 / baseline.p50).toFixed(2)}x)` : text;
}

// ---------------------------------------------------------------------------------------------------
// The server side (child process).

type ToChild = { type: 'collect' } | { type: 'stop' };
type FromChild =
  | { type: 'ready'; url: string }
  | { type: 'stages'; stages: ServerStages }
  | { type: 'failed'; message: string };

async function serve(addonPath: string | undefined, engineMs: number, busyPoll: boolean): Promise<void> {
  const scratch = mkdtempSync(join(tmpdir(), 'server-overhead-'));
  const modelDir = join(scratch, 'Qwen3-Embedding-4B'); // the served id, from the directory's name
  writeTokenizerOnlyModel(modelDir, { query: DEFAULT_QUERY_PROMPT, document: '' });
  const formatter =
    addonPath && existsSync(addonPath)
      ? new NativeFloatArrayFormatter(new NativeEngine(addonPath))
      : undefined;
  const running = await createApp({
    engine: new InstantEngine(engineMs),
    floatArrayFormatter: formatter,
    inheritProcessEnv: false,
    shutdownHooks: false,
    env: {
      API_KEY,
      MODEL_PATH: modelDir,
      DEVICE: 'cpu',
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: 'info',
      BUSY_POLL: String(busyPoll),
      // The app reads no other variable of this process: this one comes from its environment (or .env).
      BUSY_POLL_LINGER_MS: String(loadBenchConfig().server.busyPollLingerMs),
    },
  });
  await running.ready;

  const stages: ServerStages = { server: [], tokenization: [], queue: [], inference: [] };
  const server = running.app.getHttpServer() as Server;
  server.prependListener('request', (_req: IncomingMessage, res: ServerResponse) => {
    const started = performance.now();
    res.once('finish', () => stages.server.push(performance.now() - started));
  });
  const service = running.app.get(ModelRegistry).first.embeddings;
  const embed = service.embed.bind(service);
  service.embed = async (...args) => {
    const result = await embed(...args);
    stages.tokenization.push(result.timings.tokenizationMs);
    stages.queue.push(result.timings.queueMs);
    stages.inference.push(result.timings.inferenceMs);
    return result;
  };

  const send = (message: FromChild) => process.send?.(message);
  process.on('message', (message: ToChild) => {
    if (message.type === 'collect') {
      send({ type: 'stages', stages: { ...stages } });
      stages.server = [];
      stages.tokenization = [];
      stages.queue = [];
      stages.inference = [];
    } else {
      void running.app.close().finally(() => {
        rmSync(scratch, { recursive: true, force: true });
        process.exit(0);
      });
    }
  });
  send({ type: 'ready', url: running.url });
  process.stderr.write(
    `server ${process.pid}: fake engine (answers ${engineMs > 0 ? `after ${engineMs} ms` : 'at once'}), ` +
      `float rows ${formatter ? 'by the native formatter' : 'by JSON.stringify (no addon)'}\n`,
  );
}

// ---------------------------------------------------------------------------------------------------
// The client side.

class ServerProcess {
  private waiting?: (message: FromChild) => void;

  private constructor(
    readonly spec: ServerSpec,
    private readonly child: ChildProcess,
    readonly url: string,
  ) {
    child.on('message', (message: FromChild) => this.waiting?.(message));
  }

  static start(spec: ServerSpec, options: BenchOptions): Promise<ServerProcess> {
    const args = [
      '--serve',
      ...(options.addon ? ['--addon', resolve(options.addon)] : []),
      ...(options.engineMs > 0 ? ['--engine-ms', String(options.engineMs)] : []),
      ...(options.busyPoll ? ['--busy-poll'] : []),
    ];
    // stdout (the JSON request logs) goes to /dev/null: they are written, as in production, not kept.
    const child = fork(resolve(spec.script), args, { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    return new Promise((done, fail) => {
      child.once('exit', (code) =>
        fail(new Error(`${spec.label}: the server exited (${code}) before it was ready`)),
      );
      child.once('message', (message: FromChild) => {
        if (message.type === 'ready') done(new ServerProcess(spec, child, message.url));
        else fail(new Error(`${spec.label}: ${JSON.stringify(message)}`));
      });
    });
  }

  collect(): Promise<ServerStages> {
    return new Promise((done) => {
      this.waiting = (message) => {
        if (message.type === 'stages') done(message.stages);
      };
      this.child.send({ type: 'collect' } satisfies ToChild);
    });
  }

  stop(): Promise<void> {
    this.child.removeAllListeners('exit');
    return new Promise((done) => {
      this.child.once('exit', () => done());
      this.child.send({ type: 'stop' } satisfies ToChild);
    });
  }
}

async function drive(server: ServerProcess, point: BenchPoint, count: number): Promise<number[]> {
  const url = new URL('/v1/embeddings', server.url);
  const agent = keepAliveAgent(1);
  const body = Buffer.from(requestBody(point));
  const headers = { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' };
  const latencies: number[] = [];
  try {
    for (let index = 0; index < count; index += 1) {
      const { ms, status, body: text } = await send(url, { method: 'POST', headers, body }, agent);
      // Checked after the clock stopped: the client's parse is not the server's time.
      const parsed = JSON.parse(text) as { data?: unknown[]; usage?: { prompt_tokens?: number } };
      if (status !== 200 || parsed.data?.length !== point.texts) {
        throw new Error(`${server.spec.label}: HTTP ${status}: ${text.slice(0, 300)}`);
      }
      if (parsed.usage?.prompt_tokens !== point.texts * TOKENS_PER_TEXT) {
        throw new Error(
          `${server.spec.label}: expected ${point.texts * TOKENS_PER_TEXT} tokens, got ${text.slice(-80)}`,
        );
      }
      latencies.push(ms);
    }
  } finally {
    agent.destroy();
  }
  return latencies;
}

/** The items starting at `by` (mod length), wrapping around. */
export function rotate<T>(items: readonly T[], by: number): T[] {
  const start = items.length === 0 ? 0 : by % items.length;
  return [...items.slice(start), ...items.slice(0, start)];
}

async function run(options: BenchOptions): Promise<PointResult[]> {
  const servers: ServerProcess[] = [];
  try {
    for (const spec of options.servers) {
      servers.push(await ServerProcess.start(spec, options));
    }
    const results: PointResult[] = [];
    const perRound = Math.ceil(options.requests / options.rounds);
    for (const point of options.points) {
      const client = new Map<ServerProcess, number[]>(servers.map((server) => [server, []]));
      const stages = new Map<ServerProcess, ServerStages>(
        servers.map((server) => [server, { server: [], tokenization: [], queue: [], inference: [] }]),
      );
      for (const server of servers) {
        await drive(server, point, options.warmup);
        await server.collect();
      }
      // Round by round, each round starting with the next server, so a slow spell of the machine
      // (or the first requests after a switch) falls on every server alike.
      for (let round = 0; round < options.rounds; round += 1) {
        for (const server of rotate(servers, round)) {
          client.get(server)!.push(...(await drive(server, point, perRound)));
          const measured = await server.collect();
          const kept = stages.get(server)!;
          kept.server.push(...measured.server);
          kept.tokenization.push(...measured.tokenization);
          kept.queue.push(...measured.queue);
          kept.inference.push(...measured.inference);
        }
      }
      for (const server of servers) {
        const kept = stages.get(server)!;
        results.push({
          ...point,
          server: server.spec.label,
          requests: client.get(server)!.length,
          clientMs: quantiles(client.get(server)!),
          serverMs: quantiles(kept.server),
          tokenizationMs: quantiles(kept.tokenization),
          outsideEngineMs: quantiles(outsideEngine(kept)),
          queueMs: quantiles(kept.queue),
        });
      }
    }
    return results;
  } finally {
    await Promise.all(servers.map((server) => server.stop()));
  }
}

export function formatResults(results: readonly PointResult[], engineMs = 0): string {
  const lines = [
    `p50 / p90 ms (ratio of p50 to the first server); the engine is a fake that answers ${engineMs > 0 ? `after ${engineMs} ms` : 'at once'}`,
    'point            server        client                    server (request..finish)  outside the engine        tokenize        queue',
  ];
  for (const result of results) {
    const baseline = results.find(
      (other) => other.texts === result.texts && other.encoding === result.encoding,
    );
    const first = baseline && baseline !== result ? baseline : undefined;
    lines.push(
      `${`${result.texts} x ${result.encoding}`.padEnd(16)} ${result.server.padEnd(13)} ` +
        `${formatQuantiles(result.clientMs, first?.clientMs).padEnd(25)} ` +
        `${formatQuantiles(result.serverMs, first?.serverMs).padEnd(25)} ` +
        `${formatQuantiles(result.outsideEngineMs, first?.outsideEngineMs).padEnd(25)} ` +
        `${formatQuantiles(result.tokenizationMs).padEnd(15)} ${formatQuantiles(result.queueMs)}`,
    );
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const defaultAddon = resolve(__dirname, '../../build/native/Release/qwen3_embed.node');
  if (parseCommandLine(argv).serve) {
    const child = parseOptions(argv, __filename);
    await serve(child.addon, child.engineMs, child.busyPoll);
    return;
  }
  const options = parseOptions(argv, __filename, defaultAddon);
  process.stdout.write(
    `server overhead: ${options.requests} requests per point and server (after ${options.warmup} warm-up), ` +
      `${options.rounds} rounds, one keep-alive client, Node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model})\n`,
  );
  const results = await run(options);
  process.stdout.write(`${formatResults(results, options.engineMs)}\n`);
  if (options.json) {
    writeFileSync(
      options.json,
      `${JSON.stringify(
        {
          tool: 'bench/server-overhead.ts',
          engine:
            options.engineMs > 0
              ? `fake (answers after ${options.engineMs} ms, by a timer)`
              : 'fake (answers at once): the server alone',
          node: process.version,
          cpu: cpus()[0]?.model,
          cores: cpus().length,
          options: { ...options, json: undefined },
          results,
        },
        null,
        2,
      )}\n`,
    );
  }
}

if (require.main === module) {
  main().catch((error: unknown) => {
    process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  });
}

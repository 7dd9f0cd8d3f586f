/**
 * Engine-level latency, without HTTP: loads the addon once per layout and times `embed` of one
 * packed batch (sequential calls, after a warm-up), so the engine's share of a request's latency can
 * be told from the server's. Used by scripts/device/run.sh (step enginelat) to compare layouts (TP
 * sizes) and CUDA graphs on/off in one process on one card.
 *
 *   node dist/bench/engine-latency.js --model models/Qwen3-Embedding-4B --device cuda \
 *     --layouts "tp1:0:1:512 tp1-eager:0:1:0 tp2:0,1:2:512 tp2-nccl:0,1:2:0:nccl" \
 *     [--shapes 1x16,8x16,4x128] [--runs 200] [--json out.json]
 *
 * A layout is name:deviceIds:tensorParallelSize:cudaGraphMaxTokens[:nccl]; `nccl` turns the peer
 * all-reduce off (every all-reduce through NCCL). A shape is textsxtokens (all texts the same
 * length; token ids are fixed, so every layout embeds the same batch).
 */
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import type { EngineDevice, EngineDtype, PackedBatch } from '@app/engine/engine.port';
import { loadBenchConfig } from '@app/config';
import { NativeEngine } from '@app/engine/native-engine';
import { LatencySummary, summariseLatencies } from './latency-summary';

export interface LatencyLayout {
  name: string;
  deviceIds: number[];
  tensorParallelSize: number;
  cudaGraphMaxTokens: number;
  peerAllReduce: boolean;
}

export interface LatencyShape {
  texts: number;
  tokens: number;
}

export interface LatencyRow {
  layout: string;
  shape: string;
  runs: number;
  /** Percentiles as `admin bench` and the Python baseline compute them. */
  ms: LatencySummary;
}

export function parseLayouts(spec: string): LatencyLayout[] {
  return spec
    .trim()
    .split(/\s+/)
    .map((item) => {
      const [name, ids, tp, graph, allReduce, ...rest] = item.split(':');
      const layout = {
        name,
        deviceIds: ids ? ids.split(',').map(Number) : [],
        tensorParallelSize: Number(tp || '1'),
        cudaGraphMaxTokens: Number(graph || '512'),
        peerAllReduce: allReduce !== 'nccl',
      };
      if (!name || layout.deviceIds.some((d) => !Number.isInteger(d) || d < 0))
        throw new Error(`bad layout ${item}: name:deviceIds:tp:cudaGraphMaxTokens[:nccl]`);
      if ((allReduce !== undefined && allReduce !== 'nccl') || rest.length > 0)
        throw new Error(`bad layout ${item}: the fifth field can only be nccl`);
      if (!Number.isInteger(layout.tensorParallelSize) || layout.tensorParallelSize < 1)
        throw new Error(`bad tensor parallel size in ${item}`);
      if (!Number.isInteger(layout.cudaGraphMaxTokens) || layout.cudaGraphMaxTokens < 0)
        throw new Error(`bad cudaGraphMaxTokens in ${item}`);
      return layout;
    });
}

export function parseShapes(spec: string): LatencyShape[] {
  return spec.split(',').map((item) => {
    const [texts, tokens] = item.split('x').map(Number);
    if (!Number.isInteger(texts) || !Number.isInteger(tokens) || texts < 1 || tokens < 1)
      throw new Error(`bad shape ${item}: textsxtokens, e.g. 1x16`);
    return { texts, tokens };
  });
}

/** `texts` sequences of `tokens` fixed ids each (below every vocabulary size), at full dimension. */
export function shapeBatch(shape: LatencyShape, hiddenSize: number): PackedBatch {
  const tokenIds = new Int32Array(shape.texts * shape.tokens);
  for (let i = 0; i < tokenIds.length; i++) tokenIds[i] = (i * 7919 + 13) % 150_000;
  const cuSeqlens = Int32Array.from({ length: shape.texts + 1 }, (_, s) => s * shape.tokens);
  const dimensions = new Int32Array(shape.texts).fill(hiddenSize);
  return { tokenIds, cuSeqlens, dimensions, promptLengths: new Int32Array(shape.texts) };
}

interface Cli {
  model: string;
  device: EngineDevice;
  dtype: EngineDtype;
  layouts: LatencyLayout[];
  shapes: LatencyShape[];
  runs: number;
  json?: string;
}

export function parseCli(argv: string[]): Cli {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      device: { type: 'string', default: 'cuda' },
      dtype: { type: 'string' },
      layouts: { type: 'string' },
      shapes: { type: 'string', default: '1x16,8x16,4x128' },
      runs: { type: 'string', default: '200' },
      json: { type: 'string' },
    },
  });
  if (!values.model) throw new Error('--model is required');
  const device = values.device as EngineDevice;
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a positive integer');
  return {
    model: values.model,
    device,
    dtype: (values.dtype ?? (device === 'cpu' ? 'float32' : 'bfloat16')) as EngineDtype,
    layouts: parseLayouts(values.layouts ?? (device === 'cpu' ? 'cpu:::0' : 'tp1:0:1:512')),
    shapes: parseShapes(values.shapes),
    runs,
    json: values.json,
  };
}

async function main(): Promise<void> {
  const cli = parseCli(process.argv.slice(2));
  const rows: LatencyRow[] = [];
  for (const layout of cli.layouts) {
    const engine = new NativeEngine(loadBenchConfig().model.nativeAddonPath);
    const info = await engine.load({
      modelPath: cli.model,
      device: cli.device,
      dtype: cli.dtype,
      deviceIds: cli.device === 'cuda' ? layout.deviceIds : [],
      tensorParallelSize: layout.tensorParallelSize,
      cudaGraphMaxTokens: layout.cudaGraphMaxTokens,
      peerAllReduce: layout.peerAllReduce,
    });
    try {
      for (const shape of cli.shapes) {
        const batch = shapeBatch(shape, info.outputDimension);
        for (let i = 0; i < 10; i++) await engine.embed(batch);
        const times: number[] = [];
        for (let i = 0; i < cli.runs; i++) {
          const started = performance.now();
          await engine.embed(batch);
          times.push(performance.now() - started);
        }
        const row: LatencyRow = {
          layout: layout.name,
          shape: `${shape.texts}x${shape.tokens}`,
          runs: cli.runs,
          ms: summariseLatencies(times),
        };
        rows.push(row);
        process.stdout.write(
          `${row.layout}\t${row.shape}\tp50 ${row.ms.p50.toFixed(2)} ms\tp90 ${row.ms.p90.toFixed(2)} ms\tmin ${row.ms.min.toFixed(2)} ms` +
            `\t(graphs up to ${info.cudaGraphMaxTokens} tokens${info.peerAllReduce ? ', peer all-reduce' : ''})\n`,
        );
      }
    } finally {
      await engine.dispose();
    }
  }
  if (cli.json) writeFileSync(cli.json, `${JSON.stringify(rows, null, 1)}\n`);
}

if (require.main === module) {
  main().catch((error: Error) => {
    process.stderr.write(`engine-latency: ${error.message}\n`);
    process.exitCode = 1;
  });
}

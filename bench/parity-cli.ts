/**
 * What bench/parity.ts and bench/rerank-parity.ts share as command-line tools: the engine flags, the
 * fixture's weight hashes, loading the native engine, and the report (a text summary on stdout, the
 * result as JSON with --json, exit status 1 when it did not pass). scripts/device/run.sh drives both
 * with the same flags and reads the same JSON shape, so they live in one place.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { EngineDevice, EngineDtype, EngineLoadOptions, EnginePort } from '@app/engine/engine.port';
import { loadBenchConfig } from '@app/config';
import { NativeEngine } from '@app/engine/native-engine';

/** node:util parseArgs options both tools take; each adds its own. */
export const ENGINE_CLI_OPTIONS = {
  model: { type: 'string' },
  fixture: { type: 'string' },
  device: { type: 'string', default: 'cpu' },
  dtype: { type: 'string' },
  tp: { type: 'string', default: '1' },
  'device-ids': { type: 'string' },
  threshold: { type: 'string' },
  json: { type: 'string' },
  addon: { type: 'string' },
  'skip-hash': { type: 'boolean', default: false },
  help: { type: 'boolean', default: false },
} as const;

export interface EngineCliValues {
  model?: string;
  fixture?: string;
  device?: string;
  dtype?: string;
  tp?: string;
  'device-ids'?: string;
  threshold?: string;
  json?: string;
  addon?: string;
  'skip-hash'?: boolean;
  help?: boolean;
}

export interface EngineCliOptions {
  model: string;
  fixture: string;
  device: EngineDevice;
  dtype?: EngineDtype;
  tp: number;
  deviceIds?: number[];
  threshold?: number;
  json?: string;
  addon?: string;
  skipHash: boolean;
}

/** Checks the shared flags; --help prints `usage` and exits. The threshold is passed on unchecked. */
export function engineCliOptions(values: EngineCliValues, usage: string): EngineCliOptions {
  if (values.help) {
    process.stdout.write(usage);
    process.exit(0);
  }
  const device = (values.device ?? 'cpu') as EngineDevice;
  if (device !== 'cpu' && device !== 'cuda') throw new Error('--device must be cpu or cuda');
  const dtype = values.dtype as EngineDtype | undefined;
  if (dtype && !['float32', 'bfloat16', 'float16'].includes(dtype))
    throw new Error('--dtype must be float32, bfloat16 or float16');
  if (!values.model || !values.fixture) throw new Error('--model and --fixture are required');
  const tp = Number(values.tp ?? '1');
  if (!Number.isInteger(tp) || tp < 1) throw new Error('--tp must be a positive integer');
  return {
    model: values.model,
    fixture: values.fixture,
    device,
    dtype,
    tp,
    deviceIds: values['device-ids']?.split(',').map(Number),
    threshold: values.threshold !== undefined ? Number(values.threshold) : undefined,
    json: values.json,
    addon: values.addon,
    skipHash: values['skip-hash'] ?? false,
  };
}

/** The problems with these weights against a fixture's sha256 of each weight file it lists. */
export async function weightsMismatches(
  modelPath: string,
  weightsSha256: Record<string, string> | undefined,
): Promise<string[]> {
  const problems: string[] = [];
  for (const [file, expected] of Object.entries(weightsSha256 ?? {})) {
    const path = join(modelPath, file);
    if (!existsSync(path)) {
      problems.push(`${file} is missing from ${modelPath}`);
      continue;
    }
    const hash = createHash('sha256');
    await new Promise<void>((resolve, reject) => {
      createReadStream(path)
        .on('data', (chunk) => hash.update(chunk))
        .on('end', resolve)
        .on('error', reject);
    });
    const actual = hash.digest('hex');
    if (actual !== expected)
      problems.push(`${file} has sha256 ${actual}, the fixture was made from ${expected}`);
  }
  return problems;
}

/** Throws unless --skip-hash or the fixture was made from these weights. */
export async function assertFixtureWeights(
  options: EngineCliOptions,
  weightsSha256: Record<string, string> | undefined,
): Promise<void> {
  if (options.skipHash) return;
  const mismatch = await weightsMismatches(options.model, weightsSha256);
  if (mismatch.length > 0)
    throw new Error(`the fixture does not belong to this checkpoint: ${mismatch.join('; ')}`);
}

/**
 * Loads the native engine as the flags say (dtype float32 on cpu, bfloat16 on cuda unless given; the
 * first --tp GPUs unless --device-ids), plus the fixture's own load options, and runs `check` on it;
 * prints `format(result)`, writes the result to --json, sets exit status 1 unless it passed.
 */
export async function runParityCli<R extends { passed: boolean }>(
  options: EngineCliOptions,
  fixtureLoad: Partial<EngineLoadOptions>,
  check: (engine: EnginePort) => Promise<R>,
  format: (result: R) => string,
): Promise<void> {
  const engine = new NativeEngine(options.addon ?? loadBenchConfig().model.nativeAddonPath);
  const dtype = options.dtype ?? (options.device === 'cpu' ? 'float32' : 'bfloat16');
  const deviceIds =
    options.device === 'cuda' ? (options.deviceIds ?? Array.from({ length: options.tp }, (_, i) => i)) : [];
  const loadStarted = performance.now();
  const load: EngineLoadOptions = {
    modelPath: options.model,
    device: options.device,
    dtype,
    deviceIds,
    tensorParallelSize: options.tp,
    onProgress: (line) => process.stderr.write(`  ${line}\n`),
    ...fixtureLoad,
  };
  await engine.load(load);
  process.stderr.write(`loaded in ${((performance.now() - loadStarted) / 1000).toFixed(1)} s\n`);
  try {
    const result = await check(engine);
    process.stdout.write(`${format(result)}\n`);
    if (options.json) writeFileSync(options.json, `${JSON.stringify(result, null, 1)}\n`);
    if (!result.passed) process.exitCode = 1;
  } finally {
    await engine.dispose();
  }
}

/** Runs a tool's main when the file is the entry point; an error is one `name: message` line, status 1. */
export function runMain(name: string, main: () => Promise<void>): void {
  main().catch((error: Error) => {
    process.stderr.write(`${name}: ${error.message}\n`);
    process.exitCode = 1;
  });
}

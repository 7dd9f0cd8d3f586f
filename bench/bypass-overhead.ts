/**
 * What each of the hot path's framework bypasses saves of a short query: the server's own time per
 * request (bench/server-overhead.ts: the real API app over a fake engine that answers at once, one
 * keep-alive client) with every bypass, against servers that each run one bypass the framework's way
 * (`AppModuleOptions.frameworkPaths`, code only), and one that runs them all that way. All servers run
 * in this one run, round by round, each round starting with the next server.
 *
 * Reported per bypass: the difference of the server's p50 (framework path less bypass), as the median
 * over rounds of the per-round difference with its range, in µs and as a share of a short query's
 * end-to-end latency (`--query-ms`, docs/benchmarks.md; and `--e2e-ms` when given, e.g. the tiny
 * model's measured latency). A bypass pays when it saves at least 5% of that latency.
 *
 * With `--engine-ms N` the fake engine answers after N ms, as a GPU forward keeps the server waiting
 * (code that runs after the thread slept runs slower); the difference is still the bypass's.
 *
 *   node dist/bench/bypass-overhead.js [--points 1xfloat] [--requests 4000] [--warmup 500]
 *        [--rounds 20] [--engine-ms 0] [--query-ms 6.5] [--e2e-ms N] [--bypasses auth]
 *        [--addon PATH] [--markdown out.md] [--json out.json]
 */
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { extname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { HOT_PATH_BYPASSES, HotPathBypass } from '@app/api/app.module';
import { passportAuthModule } from '@app/auth/passport-auth.module';
import { BenchOptions, parsePoints, PointResult, run, ServerSpec } from './server-overhead';

/** A bypass pays when the framework path costs at least this share of a short query. */
export const PAYS_SHARE = 0.05;

const WITH_BYPASSES = 'bypasses';
const ALL_FRAMEWORK = 'all-framework';

export interface BypassOptions {
  bench: BenchOptions;
  queryMs: number;
  e2eMs?: number;
  markdown?: string;
}

export interface BypassRow {
  point: string;
  bypass: HotPathBypass | typeof ALL_FRAMEWORK;
  bypassP50Ms: number;
  frameworkP50Ms: number;
  /** Median over rounds of (framework − bypass) p50, and the smallest and largest, in µs. */
  savedUs: number;
  savedMinUs: number;
  savedMaxUs: number;
}

function positive(name: string, raw: string | undefined, fallback?: number): number | undefined {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!(value > 0)) throw new Error(`${name} must be a positive number, got ${raw}`);
  return value;
}

function whole(name: string, raw: string | undefined, fallback: number): number {
  const value = raw === undefined ? fallback : Number(raw);
  if (!Number.isInteger(value) || value < 1)
    throw new Error(`${name} must be a whole number >= 1, got ${raw}`);
  return value;
}

/** The servers: every bypass; one per bypass run the framework's way; all of them that way. */
export function bypassServers(script: string, bypasses: readonly HotPathBypass[]): ServerSpec[] {
  return [
    { label: WITH_BYPASSES, script },
    ...bypasses.map((bypass) => ({ label: bypass, script, framework: [bypass] })),
    { label: ALL_FRAMEWORK, script, framework: [...bypasses] },
  ];
}

export function parseBypassOptions(
  argv: readonly string[],
  script: string,
  defaultAddon?: string,
): BypassOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      points: { type: 'string' },
      requests: { type: 'string' },
      warmup: { type: 'string' },
      rounds: { type: 'string' },
      'query-ms': { type: 'string' },
      'e2e-ms': { type: 'string' },
      addon: { type: 'string' },
      markdown: { type: 'string' },
      json: { type: 'string' },
      bypasses: { type: 'string' },
      'engine-ms': { type: 'string' },
    },
  });
  const bypasses = values.bypasses
    ? values.bypasses.split(',').map((name) => {
        if (!HOT_PATH_BYPASSES.includes(name as HotPathBypass)) {
          throw new Error(`--bypasses: expected some of ${HOT_PATH_BYPASSES.join(',')}, got ${name}`);
        }
        return name as HotPathBypass;
      })
    : [...HOT_PATH_BYPASSES];
  return {
    bench: {
      points: parsePoints(values.points ?? '1xfloat'),
      requests: whole('--requests', values.requests, 4000),
      warmup: whole('--warmup', values.warmup, 500),
      rounds: whole('--rounds', values.rounds, 20),
      servers: bypassServers(script, bypasses),
      addon: values.addon ?? defaultAddon,
      json: values.json,
      engineMs: values['engine-ms'] === undefined ? 0 : positive('--engine-ms', values['engine-ms'])!,
      busyPoll: false,
    },
    queryMs: positive('--query-ms', values['query-ms'], 6.5)!,
    e2eMs: positive('--e2e-ms', values['e2e-ms']),
    markdown: values.markdown,
  };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** Each framework server against the server with every bypass, point by point. */
export function bypassRows(results: readonly PointResult[]): BypassRow[] {
  const rows: BypassRow[] = [];
  for (const base of results.filter((result) => result.server === WITH_BYPASSES)) {
    const point = `${base.texts} x ${base.encoding}`;
    const others = results.filter(
      (result) =>
        result.server !== WITH_BYPASSES && result.texts === base.texts && result.encoding === base.encoding,
    );
    for (const other of others) {
      const perRound = other.serverP50ByRound.map(
        (value, round) => (value - base.serverP50ByRound[round]) * 1000,
      );
      rows.push({
        point,
        bypass: other.server as BypassRow['bypass'],
        bypassP50Ms: base.serverMs.p50,
        frameworkP50Ms: other.serverMs.p50,
        savedUs: median(perRound),
        savedMinUs: Math.min(...perRound),
        savedMaxUs: Math.max(...perRound),
      });
    }
  }
  return rows;
}

const percent = (us: number, ms: number) => `${((us / 1000 / ms) * 100).toFixed(2)}%`;

export function formatBypassRows(
  rows: readonly BypassRow[],
  queryMs: number,
  e2eMs?: number,
  unavailable: readonly string[] = [],
): string {
  const e2eHeader = e2eMs ? ` share of ${e2eMs} ms (measured e2e) |` : '';
  const lines = [
    `| point | framework path for | server p50, bypass (ms) | server p50, framework (ms) | saved by the bypass (µs; median of rounds [min, max]) | share of ${queryMs} ms |${e2eHeader} pays (>= ${PAYS_SHARE * 100}%) |`,
    `| --- | --- | --- | --- | --- | --- |${e2eMs ? ' --- |' : ''} --- |`,
  ];
  for (const row of rows) {
    const share = row.savedUs / 1000 / queryMs;
    lines.push(
      `| ${row.point} | ${row.bypass} | ${row.bypassP50Ms.toFixed(3)} | ${row.frameworkP50Ms.toFixed(3)} | ` +
        `${row.savedUs.toFixed(1)} [${row.savedMinUs.toFixed(1)}, ${row.savedMaxUs.toFixed(1)}] | ` +
        `${percent(row.savedUs, queryMs)} |${e2eMs ? ` ${percent(row.savedUs, e2eMs)} |` : ''} ` +
        `${row.bypass === ALL_FRAMEWORK ? '(all together)' : share >= PAYS_SHARE ? 'yes' : 'no'} |`,
    );
  }
  for (const reason of unavailable) lines.push('', reason);
  return lines.join('\n');
}

async function main(): Promise<void> {
  const defaultAddon = resolve(__dirname, '../../build/native/Release/qwen3_embed.node');
  // The servers are server-overhead's `--serve` children.
  const script = join(__dirname, `server-overhead${extname(__filename)}`);
  const options = parseBypassOptions(process.argv.slice(2), script, defaultAddon);
  const unavailable: string[] = [];
  if (!passportAuthModule()) {
    // The framework path of the bearer check needs the two packages; the others are measured.
    options.bench.servers = options.bench.servers
      .filter((spec) => spec.label !== 'auth')
      .map((spec) => ({ ...spec, framework: spec.framework?.filter((bypass) => bypass !== 'auth') }));
    unavailable.push(
      'auth: not measured: its framework path needs @nestjs/passport and passport, which are not installed here.',
    );
  }
  const header =
    `Framework bypasses: the server's time per short query (fake engine answering ` +
    `${options.bench.engineMs > 0 ? `after ${options.bench.engineMs} ms` : 'at once'}), ` +
    `${options.bench.requests} requests per server and point after ${options.bench.warmup} warm-up, ` +
    `${options.bench.rounds} interleaved rounds, one keep-alive client; Node ${process.version}, ` +
    `${cpus().length} cores (${cpus()[0]?.model}).`;
  process.stdout.write(`${header}\n`);
  const results = await run(options.bench);
  const table = formatBypassRows(bypassRows(results), options.queryMs, options.e2eMs, unavailable);
  process.stdout.write(`${table}\n`);
  if (options.markdown) writeFileSync(options.markdown, `${header}\n\n${table}\n`);
  if (options.bench.json) {
    writeFileSync(
      options.bench.json,
      `${JSON.stringify({ tool: 'bench/bypass-overhead.ts', node: process.version, cpu: cpus()[0]?.model, queryMs: options.queryMs, e2eMs: options.e2eMs, results, rows: bypassRows(results) }, null, 2)}\n`,
    );
  }
}

if (require.main === module) {
  main().catch((error: unknown) => {
    process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  });
}

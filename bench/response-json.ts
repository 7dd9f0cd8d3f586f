/**
 * The cost of writing an embeddings response body, which runs on the server's one JS thread: the
 * engine's native float formatter (shortest float32 digits) against the JSON.stringify fallback, for
 * responses of 1 and 64 rows of 2560 floats, the client's JSON.parse of each body, and the SHA-1 of
 * the body that Express's ETag (now off) computed for every response. No server, no GPU:
 * `embeddingsResponseJson` itself with the real addon.
 *
 *   node dist/bench/response-json.js [--runs 300]
 */
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { embeddingsResponseJson, FloatArrayJson } from '@app/embeddings/embedding-encoding';
import { loadBenchConfig } from '@app/config';
import { NativeEngine } from '@app/engine/native-engine';
import { percentile } from './latency-summary';

export interface ResponseJsonRow {
  rows: number;
  formatter: 'native' | 'JSON.stringify';
  /** Median milliseconds to write one body. */
  writeMs: number;
  /** Median milliseconds for JSON.parse of that body. */
  parseMs: number;
  /** Median milliseconds for the SHA-1 of that body (Express's ETag). */
  sha1Ms: number;
  bytes: number;
}

function median(values: readonly number[]): number {
  return percentile(
    [...values].sort((a, b) => a - b),
    0.5,
  );
}

/** Unit rows of 2560 seeded values shaped like embeddings (small, both signs). */
export function sampleRows(count: number, width = 2560): Float32Array[] {
  let seed = 1;
  const next = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648 - 0.5;
  };
  return Array.from({ length: count }, () => {
    const row = Float32Array.from({ length: width }, next);
    const length = Math.hypot(...row);
    return row.map((value) => value / length);
  });
}

export function measureResponseJson(
  rowsPerResponse: number,
  formatter: ResponseJsonRow['formatter'],
  floatJson: FloatArrayJson,
  runs: number,
): ResponseJsonRow {
  const parts = {
    rows: sampleRows(rowsPerResponse),
    encoding: 'float' as const,
    model: 'm',
    promptTokens: 1,
  };
  let body = '';
  const write: number[] = [];
  const parse: number[] = [];
  const sha1: number[] = [];
  for (let i = 0; i < runs + 20; i += 1) {
    const started = performance.now();
    body = embeddingsResponseJson(parts, floatJson);
    const written = performance.now();
    JSON.parse(body);
    const parsed = performance.now();
    createHash('sha1').update(body, 'utf8').digest('base64');
    const hashed = performance.now();
    if (i >= 20) {
      write.push(written - started);
      parse.push(parsed - written);
      sha1.push(hashed - parsed);
    }
  }
  return {
    rows: rowsPerResponse,
    formatter,
    writeMs: median(write),
    parseMs: median(parse),
    sha1Ms: median(sha1),
    bytes: body.length,
  };
}

function main(): void {
  const { values } = parseArgs({ options: { runs: { type: 'string', default: '300' } } });
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a positive integer');
  const engine = new NativeEngine(loadBenchConfig().model.nativeAddonPath);
  const native: FloatArrayJson = (row) => engine.floatArrayJson(row);
  const fallback: FloatArrayJson = () => undefined;
  for (const rows of [1, 64]) {
    const n = rows === 1 ? runs : Math.max(10, Math.round(runs / 10));
    const js = measureResponseJson(rows, 'JSON.stringify', fallback, n);
    const nat = measureResponseJson(rows, 'native', native, n);
    for (const r of [js, nat]) {
      process.stdout.write(
        `${String(r.rows).padStart(2)} row(s)  ${r.formatter.padEnd(14)}  write ${r.writeMs.toFixed(3)} ms  ` +
          `parse ${r.parseMs.toFixed(3)} ms  sha1 ${r.sha1Ms.toFixed(3)} ms  ${r.bytes} bytes\n`,
      );
    }
    process.stdout.write(
      `          native / JSON.stringify: write ${(nat.writeMs / js.writeMs).toFixed(2)}x, ` +
        `parse ${(nat.parseMs / js.parseMs).toFixed(2)}x, bytes ${(nat.bytes / js.bytes).toFixed(2)}x\n`,
    );
  }
}

if (require.main === module) main();

import fs from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeTokenizerOnlyModel } from '@app/checkpoint';
import { EngineError } from '@app/engine/engine.port';
import { FakeEngine } from '@app/engine/testing';
import type { RunningApp } from './app.factory';
import { startWithFakeEngine, UNIT_TEST_KEY } from './testing/fake-engine-app';

const KEY = UNIT_TEST_KEY;

/** The app's JSON log lines, as written to stdout (synchronously, by pino's destination). */
describe('the app logs', () => {
  const lines: Record<string, unknown>[] = [];
  let scratch: string;
  let engine: FakeEngine;
  let sut: RunningApp;

  beforeAll(async () => {
    const writeSync = fs.writeSync.bind(fs);
    jest.spyOn(fs, 'writeSync').mockImplementation(((fd: number, data: unknown, ...rest: never[]) => {
      if (fd !== 1 || typeof data !== 'string') return writeSync(fd, data as string, ...rest);
      for (const line of data.split('\n').filter(Boolean)) {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      return Buffer.byteLength(data);
    }) as typeof fs.writeSync);
    scratch = mkdtempSync(join(tmpdir(), 'app-logging-'));
    const modelDir = join(scratch, 'Qwen3-Embedding-fake');
    writeTokenizerOnlyModel(modelDir);
    engine = new FakeEngine();
    sut = await startWithFakeEngine(engine, modelDir, { LOG_LEVEL: 'info' });
  });

  afterAll(async () => {
    await sut.app.close();
    jest.restoreAllMocks();
    rmSync(scratch, { recursive: true, force: true });
  });

  const post = (body: unknown, requestId: string, headers: Record<string, string> = {}) =>
    fetch(`${sut.url}/v1/embeddings?access_token=${KEY}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': requestId, ...headers },
      body: JSON.stringify(body),
    });
  const about = (requestId: string) =>
    lines.filter((line) => (line.req as { id?: string } | undefined)?.id === requestId);

  it('writes one line per request: its id, method, client, path, status, tokens and times, nothing else of it', async () => {
    // From loopback, a trusted proxy: the client is the one Nginx names.
    const res = await post({ input: 'private text' }, 'req-ok', { 'x-forwarded-for': '198.51.100.7' });
    expect(res.status).toBe(200);
    await res.text();
    await new Promise((resolve) => setImmediate(resolve));
    const [line, ...more] = about('req-ok');
    expect(more).toEqual([]);
    expect(line).toMatchObject({
      level: 30,
      req: { id: 'req-ok', method: 'POST', path: '/v1/embeddings', remoteAddress: '198.51.100.7' },
      res: {
        statusCode: 200,
        tokens: Number(res.headers.get('x-total-tokens')),
        tokenizationMs: Number(res.headers.get('x-tokenization-time-ms')),
        queueMs: Number(res.headers.get('x-queue-time-ms')),
        inferenceMs: Number(res.headers.get('x-inference-time-ms')),
      },
      responseTime: expect.any(Number),
      msg: 'request completed',
    });
    expect(Object.keys(line)).toEqual([
      'level',
      'time',
      'pid',
      'hostname',
      'req',
      'res',
      'responseTime',
      'msg',
    ]);
    expect(Object.keys(line.req as object)).toEqual(['id', 'method', 'path', 'remoteAddress']);
    expect(JSON.stringify(lines)).not.toMatch(/private text|access_token|unit-test-key|authorization/);
  });

  it('leaves health and metrics out', async () => {
    const before = lines.length;
    await (await fetch(`${sut.url}/health/live`)).text();
    await (await fetch(`${sut.url}/metrics`)).text();
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines.slice(before).filter((line) => line.req)).toEqual([]);
  });

  it('names the request in the error line of a 500', async () => {
    engine.failWhen = () => new EngineError('INTERNAL', 'boom');
    const res = await post({ input: 'x' }, 'req-500');
    engine.failWhen = undefined;
    expect(res.status).toBe(500);
    const body = (await res.json()) as { error: { code: string | null; type: string } };
    await new Promise((resolve) => setImmediate(resolve));
    expect(about('req-500').map((line) => [line.level, line.msg])).toEqual(
      expect.arrayContaining([
        [50, 'unhandled error while serving a request'],
        [50, 'request errored'],
      ]),
    );
    const errored = about('req-500').find((line) => line.msg === 'request errored');
    expect(errored).toMatchObject({
      res: { statusCode: 500, errorCode: body.error.code ?? body.error.type },
    });
  });
});

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { passportAuthModule } from '@app/auth';
import { writeTokenizerOnlyModel } from '@app/checkpoint';
import { FakeEngine } from '@app/engine/testing';
import { RunningApp } from './app.factory';
import { HOT_PATH_BYPASSES, HotPathBypass } from './app.module';
import { startWithFakeEngine, UNIT_TEST_KEY } from './testing/fake-engine-app';

interface Exchange {
  name: string;
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: unknown;
}

/** Valid and invalid requests through every bypassed step: auth, the request line, the answer. */
const EXCHANGES: Exchange[] = [
  { name: 'one text, float', body: { input: 'hello there', model: 'fake-embedding' } },
  { name: 'texts, base64', body: { input: ['a', 'b c'], encoding_format: 'base64', dimensions: 32 } },
  { name: 'token ids', body: { input: [[9707, 1879], [151643]] } },
  { name: 'an unknown field (ignored)', body: { input: 'hi', extra: { nested: [1, 2] } } },
  { name: 'a null field', body: { input: 'hi', model: null } },
  { name: 'no input', body: { model: 'fake-embedding' } },
  { name: 'an empty text', body: { input: '' } },
  { name: 'dimensions too small', body: { input: 'hi', dimensions: 8 } },
  { name: 'dimensions not a whole number', body: { input: 'hi', dimensions: 64.5 } },
  { name: 'a wrong encoding', body: { input: 'hi', encoding_format: 'hex' } },
  { name: 'a body that is an array', body: [{ input: 'hi' }] },
  { name: 'an unknown model', body: { input: 'hi', model: 'gpt-4' } },
  { name: 'too many tokens', body: { input: 'word '.repeat(40) } },
  { name: 'a bad deadline header', body: { input: 'hi' }, headers: { 'x-request-deadline-ms': 'soon' } },
  { name: 'no key', body: { input: 'hi' }, headers: { authorization: '' } },
  { name: 'a wrong key', body: { input: 'hi' }, headers: { authorization: 'Bearer sk-wrong' } },
  {
    name: 'a key in the query string',
    path: '/v1/embeddings?access_token=' + UNIT_TEST_KEY,
    body: { input: 'hi' },
    headers: { authorization: '' },
  },
  {
    name: 'a key in the body',
    body: { input: 'hi', access_token: UNIT_TEST_KEY },
    headers: { authorization: '' },
  },
  { name: 'a key in two places', path: '/v1/embeddings?access_token=x', body: { input: 'hi' } },
  { name: 'the models', method: 'GET', path: '/v1/models' },
  { name: 'health', method: 'GET', path: '/health/ready' },
];

/** Headers that differ between any two answers (time of day, measured durations). */
const VOLATILE = new Set(['date', 'x-tokenization-time-ms', 'x-queue-time-ms', 'x-inference-time-ms']);

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

async function exchange(url: string, item: Exchange, index: number): Promise<Answer> {
  const headers: Record<string, string> = {
    authorization: `Bearer ${UNIT_TEST_KEY}`,
    'content-type': 'application/json',
    'x-request-id': `parity-${index}`,
    ...item.headers,
  };
  if (headers.authorization === '') delete headers.authorization;
  const res = await fetch(`${url}${item.path ?? '/v1/embeddings'}`, {
    method: item.method ?? 'POST',
    headers,
    body: item.method === 'GET' ? undefined : JSON.stringify(item.body),
  });
  // A model's `created` is when this app loaded it.
  const body = (await res.text()).replace(/"created":\d+/g, '"created":0');
  const answer: Answer = { status: res.status, headers: {}, body };
  res.headers.forEach((value, name) => {
    answer.headers[name] = VOLATILE.has(name) ? '(volatile)' : value;
  });
  return answer;
}

/**
 * Each framework bypass answers exactly as the framework's path does: status, headers and body of
 * valid and invalid requests, with the bypass on and with only that bypass taken the framework's way.
 * The auth bypass is compared when @nestjs/passport and passport are installed.
 */
describe('hot-path bypasses', () => {
  const measurable = HOT_PATH_BYPASSES.filter((bypass) => bypass !== 'auth' || passportAuthModule());
  let modelDir: string;
  const apps = new Map<string, RunningApp>();

  const start = (framework: HotPathBypass[]) =>
    startWithFakeEngine(
      new FakeEngine({ info: { hiddenSize: 64 } }),
      modelDir,
      { SERVED_MODEL_NAME: 'fake-embedding', MAX_INPUT_TOKENS: '16', MAX_REQUEST_TOKENS: '40' },
      { frameworkPaths: framework },
    );

  beforeAll(async () => {
    modelDir = mkdtempSync(join(tmpdir(), 'Qwen3-Embedding-bypass-'));
    writeTokenizerOnlyModel(modelDir, { query: 'Instruct: find\nQuery:', document: '' });
    apps.set('bypasses', await start([]));
    for (const bypass of measurable) apps.set(bypass, await start([bypass]));
  });

  afterAll(async () => {
    for (const app of apps.values()) await app.app.close();
    rmSync(modelDir, { recursive: true, force: true });
  });

  it('sends every request of the list through a path that answers it (not all 200, not all refused)', async () => {
    const statuses = await Promise.all(
      EXCHANGES.map(async (item, index) => (await exchange(apps.get('bypasses')!.url, item, index)).status),
    );
    expect(statuses.filter((status) => status === 200).length).toBeGreaterThanOrEqual(5);
    expect(new Set(statuses)).toEqual(new Set([200, 400, 401, 404]));
  });

  it.each(HOT_PATH_BYPASSES.filter((bypass) => bypass !== 'auth' || passportAuthModule()))(
    'answers as the framework path does with the %s bypass',
    async (bypass) => {
      for (const [index, item] of EXCHANGES.entries()) {
        const expected = await exchange(apps.get(bypass)!.url, item, index);
        const actual = await exchange(apps.get('bypasses')!.url, item, index);
        expect({ name: item.name, ...actual }).toEqual({ name: item.name, ...expected });
      }
    },
  );
});

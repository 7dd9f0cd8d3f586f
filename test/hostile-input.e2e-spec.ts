/**
 * Whatever a client sends, the server answers in the OpenAI error envelope (or with embeddings), never
 * with a 500, never crashes, and keeps serving: a seeded stream of malformed and adversarial bodies
 * through the real app, tokenizer, batcher and native engine on the CPU.
 */
import request from 'supertest';
import { mulberry32 } from '@app/common/seeded-random';
import type { RunningApp } from '../apps/api/src/app.factory';
import { startTestApp, TEST_API_KEY } from './support/test-app';

const STRINGS = [
  '',
  ' ',
  'hello',
  '<|endoftext|>',
  '<|im_start|>',
  '\u0000',
  '\ud800',
  '🙂'.repeat(50),
  'x'.repeat(3000),
];
const NUMBERS = [
  0,
  -1,
  1,
  31,
  32,
  33,
  151664,
  151665,
  151668,
  2 ** 31,
  -(2 ** 31),
  1.5,
  1e308,
  Number.MAX_SAFE_INTEGER,
];

function hostileValue(random: () => number, depth = 0): unknown {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)];
  switch (Math.floor(random() * (depth > 2 ? 5 : 8))) {
    case 0:
      return pick(STRINGS);
    case 1:
      return pick(NUMBERS);
    case 2:
      return pick([null, true, false]);
    case 3:
      return String(pick(NUMBERS));
    case 4:
      return {};
    case 5:
      return Array.from({ length: Math.floor(random() * 4) }, () => hostileValue(random, depth + 1));
    case 6:
      return Array.from({ length: 1 + Math.floor(random() * 3) }, () => pick(NUMBERS));
    default:
      return { input: hostileValue(random, depth + 1) };
  }
}

/** Bodies of the right shape with edge values, so many reach the tokenizer, batcher and engine. */
function nearValidBody(random: () => number): Record<string, unknown> {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)];
  const text = (): string => pick(STRINGS.filter((s) => s.length > 0));
  const id = (): number => pick([0, 1, 13, 151643, 151644, 151664]);
  const input = pick([
    () => text(),
    () => Array.from({ length: 1 + Math.floor(random() * 5) }, text),
    () => Array.from({ length: 1 + Math.floor(random() * 8) }, id),
    () =>
      Array.from({ length: 1 + Math.floor(random() * 3) }, () =>
        Array.from({ length: 1 + Math.floor(random() * 6) }, id),
      ),
  ])();
  const body: Record<string, unknown> = { input };
  const maybe = (field: string, values: readonly unknown[]): void => {
    const value = pick(values);
    if (value !== undefined) body[field] = value;
  };
  maybe('dimensions', [undefined, 32, 33, 64, 1024, 1025, 31]);
  maybe('encoding_format', [undefined, 'float', 'base64', 'bogus']);
  maybe('input_type', [undefined, undefined, 'query', 'document', 'passage']);
  maybe('truncate', [undefined, true, false]);
  maybe('instruction', [undefined, undefined, 'Find code', '']);
  return body;
}

function hostileBody(random: () => number): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  const fields = [
    'input',
    'model',
    'encoding_format',
    'dimensions',
    'user',
    'input_type',
    'prompt_name',
    'instruction',
    'truncate',
  ];
  for (const field of fields) {
    if (random() < (field === 'input' ? 0.9 : 0.35)) body[field] = hostileValue(random);
  }
  return body;
}

describe('hostile input (raw HTTP, real engine)', () => {
  let running: RunningApp;
  const auth = { Authorization: `Bearer ${TEST_API_KEY}` };

  beforeAll(async () => {
    running = await startTestApp({ MAX_INPUT_TOKENS: '512', BODY_LIMIT: '256kb' });
  });

  afterAll(async () => {
    await running?.app.close();
  });

  it('answers 300 seeded malformed requests with 200 or a 4xx envelope, then still serves', async () => {
    const server = running.app.getHttpServer();
    const random = mulberry32(20261127);
    const statuses = new Map<number, number>();
    for (let i = 0; i < 300; i++) {
      const body = random() < 0.5 ? nearValidBody(random) : hostileBody(random);
      const response = await request(server).post('/v1/embeddings').set(auth).send(body);
      statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
      if (response.status !== 200) {
        const accepted =
          [400, 404, 413].includes(response.status) && response.body.error?.type === 'invalid_request_error';
        if (!accepted || typeof response.body.error.message !== 'string') {
          throw new Error(
            `request ${i} ${JSON.stringify(body).slice(0, 300)} got ${response.status} ${JSON.stringify(response.body).slice(0, 300)}`,
          );
        }
      } else {
        expect(response.body.object).toBe('list');
        for (const row of response.body.data) {
          const embedding = row.embedding as number[] | string;
          const vector =
            typeof embedding === 'string'
              ? Array.from(new Float32Array(new Uint8Array(Buffer.from(embedding, 'base64')).buffer))
              : embedding;
          expect(Math.abs(Math.hypot(...vector) - 1)).toBeLessThan(1e-4);
        }
      }
    }
    // Both outcomes occurred: the stream is not all rejected by one early check.
    console.log(`hostile input statuses: ${JSON.stringify(Object.fromEntries(statuses))}`);
    expect(statuses.get(200) ?? 0).toBeGreaterThan(20);
    expect(statuses.get(400) ?? 0).toBeGreaterThan(100);

    const good = await request(server)
      .post('/v1/embeddings')
      .set(auth)
      .send({ input: ['still serving', 'after all that'], dimensions: 64 })
      .expect(200);
    expect(good.body.data).toHaveLength(2);
  }, 300_000);

  it('answers raw bytes that are not JSON with a 400 envelope', async () => {
    const server = running.app.getHttpServer();
    for (const raw of [
      '{',
      '{"input": [1,2,',
      '\u0000\u0001\u0002',
      '[]',
      'null',
      '"text"',
      '{"input": "a"}}',
    ]) {
      const response = await request(server)
        .post('/v1/embeddings')
        .set(auth)
        .set('Content-Type', 'application/json')
        .send(raw);
      expect([400, 413]).toContain(response.status);
      expect(response.body.error?.type).toBe('invalid_request_error');
    }
    await request(server).post('/v1/embeddings').set(auth).send({ input: 'ok' }).expect(200);
  });
});

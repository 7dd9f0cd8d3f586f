import { OpenAIEmbeddings } from '@langchain/openai';
import { fromBase64 } from '@app/embeddings/embedding-encoding';
import type { RunningApp } from '../apps/api/src/app.factory';
import { cosine, readJson, SERVED_MODEL, startTestApp, TEST_API_KEY } from './support/test-app';

const CODE_ALIAS = 'code-search';
const CODE_INSTRUCTION = 'Given a programming question, retrieve code that answers it';

/** What LangChain sent, as the server received it. */
interface Sent {
  model: string;
  input: string | string[];
  encoding_format?: string;
}

/**
 * LangChain's OpenAIEmbeddings, a client that can send only `model`, `input` (and `dimensions`):
 * prompt aliases give it queries, documents and custom instructions, each equal to what the
 * extensions of POST /v1/embeddings give. Real app, real addon, demo model on the CPU.
 */
describe('prompt aliases through LangChain (OpenAIEmbeddings, real engine)', () => {
  let running: RunningApp;
  let sent: Sent[];

  /** LangChain's client on the test server, recording the bodies it sends. */
  const langchain = (model: string, fields: { batchSize?: number } = {}) =>
    new OpenAIEmbeddings({
      model,
      apiKey: TEST_API_KEY,
      maxRetries: 0,
      ...fields,
      configuration: {
        baseURL: `${running.url}/v1`,
        fetch: async (url: string | URL | Request, init?: RequestInit) => {
          if (typeof init?.body === 'string') sent.push(JSON.parse(init.body) as Sent);
          return fetch(url, init);
        },
      },
    });

  /** POST /v1/embeddings with the extensions, base64 as LangChain's SDK asks: the exact float32 rows. */
  const embedDirect = async (body: Record<string, unknown>): Promise<Float32Array[]> => {
    const res = await fetch(`${running.url}/v1/embeddings`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_API_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: SERVED_MODEL, encoding_format: 'base64', ...body }),
    });
    expect(res.status).toBe(200);
    const json = await readJson(res);
    return (json.data as { embedding: string }[]).map((row) => fromBase64(row.embedding));
  };

  /** Equal rows: the same text in another batch may differ in the last bits of fp32 sums. */
  const expectSameRow = (actual: ArrayLike<number>, expected: ArrayLike<number>) => {
    expect(actual).toHaveLength(expected.length);
    expect(cosine(Array.from(actual), Array.from(expected))).toBeGreaterThan(0.99999);
    let worst = 0;
    for (let k = 0; k < expected.length; k += 1) worst = Math.max(worst, Math.abs(actual[k] - expected[k]));
    expect(worst).toBeLessThan(1e-5);
  };

  beforeAll(async () => {
    running = await startTestApp({ PROMPT_ALIASES: JSON.stringify({ [CODE_ALIAS]: CODE_INSTRUCTION }) });
  });

  beforeEach(() => {
    sent = [];
  });

  afterAll(async () => {
    await running?.app.close();
  });

  it('embedQuery through `<id>:query` equals input_type query', async () => {
    const query = 'How do I reverse a linked list in place?';
    const row = await langchain(`${SERVED_MODEL}:query`).embedQuery(query);

    // What crossed the wire: the alias as model, the text, and base64 (the OpenAI SDK's default).
    expect(sent).toEqual([{ model: `${SERVED_MODEL}:query`, input: query, encoding_format: 'base64' }]);
    const [asQuery] = await embedDirect({ input: query, input_type: 'query' });
    expectSameRow(row, asQuery);
    // The prompt made a difference: the plain text is another row.
    const [plain] = await embedDirect({ input: query });
    expect(cosine(row, Array.from(plain))).toBeLessThan(0.9999);
  });

  it('sends a multi-line query on one line, and the row is that line as a query', async () => {
    const query = 'Which error does this raise?\nKeyError: missing';
    const row = await langchain(`${SERVED_MODEL}:query`).embedQuery(query);
    // stripNewLines (LangChain's default) replaced the newline before sending.
    expect(sent[0].input).toBe('Which error does this raise? KeyError: missing');
    const [asQuery] = await embedDirect({ input: sent[0].input, input_type: 'query' });
    expectSameRow(row, asQuery);
  });

  it('embedDocuments through the plain id equals documents, in order, across its batches', async () => {
    const documents = [
      'A linked list is reversed by walking it once and flipping each next pointer.',
      'Le français utilise des accents : é, è, à.',
      'def reverse(head):\n    prev = None\n    while head:\n        head.next, prev, head = prev, head, head.next\n    return prev',
      '日本語のテキストも埋め込める。',
      'short',
    ];
    const rows = await langchain(SERVED_MODEL, { batchSize: 2 }).embedDocuments(documents);

    // Three requests of at most two texts, newlines replaced by spaces, model as given.
    expect(sent.map((body) => body.model)).toEqual([SERVED_MODEL, SERVED_MODEL, SERVED_MODEL]);
    const wire = sent.flatMap((body) => body.input as string[]);
    expect(wire).toEqual(documents.map((text) => text.replace(/\n/g, ' ')));
    const asDocuments = await embedDirect({ input: wire, input_type: 'document' });
    expect(rows).toHaveLength(documents.length);
    rows.forEach((row, index) => expectSameRow(row, asDocuments[index]));
  });

  it('embedDocuments through `<id>:document` equals the plain id for this checkpoint (no document prompt)', async () => {
    const documents = ['Binary search halves the range each step.', 'Quicksort partitions around a pivot.'];
    const viaAlias = await langchain(`${SERVED_MODEL}:document`).embedDocuments(documents);
    const plain = await embedDirect({ input: documents, input_type: 'document' });
    viaAlias.forEach((row, index) => expectSameRow(row, plain[index]));
  });

  it('a PROMPT_ALIASES name embeds with its instruction', async () => {
    const queries = ['reverse a linked list', 'parse JSON in TypeScript'];
    const client = langchain(CODE_ALIAS);
    const rows = await client.embedDocuments(queries);
    const one = await client.embedQuery(queries[0]);

    expect(sent.map((body) => body.model)).toEqual([CODE_ALIAS, CODE_ALIAS]);
    const instructed = await embedDirect({ input: queries, instruction: CODE_INSTRUCTION });
    rows.forEach((row, index) => expectSameRow(row, instructed[index]));
    expectSameRow(one, instructed[0]);
    // Not the default query prompt.
    const [defaultQuery] = await embedDirect({ input: queries[0], input_type: 'query' });
    expect(cosine(one, Array.from(defaultQuery))).toBeLessThan(0.9999);
  });

  it('lists the aliases on GET /v1/models, as LangChain users discover them', async () => {
    const res = await fetch(`${running.url}/v1/models`, {
      headers: { authorization: `Bearer ${TEST_API_KEY}` },
    });
    const { data } = await readJson(res);
    expect(data.map((entry: { id: string }) => entry.id)).toEqual([
      SERVED_MODEL,
      `${SERVED_MODEL}:query`,
      `${SERVED_MODEL}:document`,
      CODE_ALIAS,
    ]);
    expect(data[3]).toMatchObject({
      parent: SERVED_MODEL,
      prompt: { input_type: 'query', instruction: CODE_INSTRUCTION },
    });
  });

  it('POST /tokenize under the alias gives the ids the engine embedded: the instruction prompt, then the end-of-text', async () => {
    const res = await fetch(`${running.url}/tokenize`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_API_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: CODE_ALIAS, prompt: 'reverse a linked list', return_token_strs: true }),
    });
    expect(res.status).toBe(200);
    const body = await readJson(res);
    const detokenized = await fetch(`${running.url}/detokenize`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_API_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ tokens: body.tokens }),
    });
    expect(await readJson(detokenized)).toEqual({
      prompt: `Instruct: ${CODE_INSTRUCTION}\nQuery:reverse a linked list<|endoftext|>`,
    });
    expect(body.token_strs.at(-1)).toBe('<|endoftext|>');
    expect(body.count).toBe(body.tokens.length);
    // The same count the embeddings endpoint reports for that request.
    const embedded = await fetch(`${running.url}/v1/embeddings`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_API_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: CODE_ALIAS, input: 'reverse a linked list' }),
    });
    expect((await readJson(embedded)).usage.prompt_tokens).toBe(body.count);
  });
});

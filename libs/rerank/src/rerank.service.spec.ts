import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Logger } from '@nestjs/common';
import { BatchingService } from '@app/batching/batching.service';
import { writeTokenizerOnlyModel } from '@app/checkpoint/embedding-tokenizer';
import { RequestAbortedError } from '@app/common';
import { loadAppConfig } from '@app/config';
import { ModelService } from '@app/embeddings/model.service';
import { TokenizerService } from '@app/embeddings/tokenizer.service';
import { EngineError } from '@app/engine/engine.port';
import { ModelLifecycle } from '@app/engine/model-lifecycle.service';
import { FakeEngine } from '@app/engine/testing';
import { MetricsService } from '@app/metrics/metrics.service';
import { byScore, RerankJob, RerankScore, RerankService, sigmoid } from './rerank.service';

const job = (documents: string[], extra: Partial<RerankJob> = {}): RerankJob => ({
  query: 'capital of China',
  documents,
  truncate: true,
  field: 'documents',
  ...extra,
});

describe(RerankService.name, () => {
  let dir: string;
  let engine: FakeEngine;
  let sut: RerankService;

  beforeAll(async () => {
    Logger.overrideLogger(false);
    dir = join(mkdtempSync(join(tmpdir(), 'rerank-service-')), 'Qwen3-Reranker-tiny');
    writeTokenizerOnlyModel(dir);
    writeFileSync(
      join(dir, 'config.json'),
      JSON.stringify({ model_type: 'qwen3', architectures: ['Qwen3ForCausalLM'] }),
    );
    const config = loadAppConfig({ API_KEY: 'k', MODEL_PATH: dir, DEVICE: 'cpu', WARMUP: 'false' });
    engine = new FakeEngine({ info: { vocabSize: 151669, maxPositionEmbeddings: 40960 } });
    const tokenizer = new TokenizerService();
    const model = new ModelService(config, new ModelLifecycle(config, engine), tokenizer);
    await model.load();
    const metrics = new MetricsService();
    const batching = new BatchingService(engine, metrics, {
      maxBatchTokens: 100_000,
      maxBatchSequences: 100,
      maxQueueTokens: 1_000_000,
      maxQueuedRequests: 100,
      agingTokensPerSecond: 1000,
      drainTimeoutMs: 1000,
      requestDeadlineMs: 60_000,
    });
    sut = new RerankService(config, model, tokenizer, batching, metrics);
  });

  afterAll(() => rmSync(join(dir, '..'), { recursive: true, force: true }));

  afterEach(() => {
    engine.completion = 'immediate';
    engine.failWhen = undefined;
  });

  it('scores every document in one forward batch, one value each, relevance the sigmoid of it', async () => {
    const before = engine.batches.length;
    const outcome = await sut.rerank(job(['Beijing', 'Paris', '']));
    expect(engine.batches).toHaveLength(before + 1);
    expect(Array.from(engine.batches[before].dimensions)).toEqual([1, 1, 1]);
    expect(outcome.scores.map((score) => score.index)).toEqual([0, 1, 2]);
    for (const score of outcome.scores) expect(score.relevance).toBe(sigmoid(score.raw));
    expect(outcome.promptTokens).toBe(engine.batches[before].tokenIds.length);
  });

  it('gives up the request of a client that disconnected', async () => {
    engine.completion = 'manual';
    const abort = new AbortController();
    const pending = sut.rerank(job(['a', 'b']), abort.signal);
    await new Promise((resolve) => setTimeout(resolve, 50));
    abort.abort();
    await expect(pending).rejects.toThrow(RequestAbortedError);
    for (const call of engine.calls) call.resolve();
  });

  it('names the document the model rejects, not an "input"', async () => {
    // The engine refuses any batch holding the second document's pair (its longer sequence).
    engine.failWhen = (batch) =>
      batch.cuSeqlens.length > 1 &&
      Array.from(batch.cuSeqlens).some((end, k) => k > 0 && end - batch.cuSeqlens[k - 1] > 80)
        ? new EngineError('INVALID_ARGUMENT', 'bad id')
        : undefined;
    await expect(sut.rerank(job(['a', 'a much longer document '.repeat(8)]))).rejects.toMatchObject({
      param: 'documents',
      message: expect.stringMatching(/^documents\[1\] could not be scored/),
    });
  });
});

describe(sigmoid.name, () => {
  it('is softmax([yes, no]) taken at yes, without overflow', () => {
    const [yes, no] = [1.25, -0.5];
    const softmax = Math.exp(yes) / (Math.exp(yes) + Math.exp(no));
    expect(sigmoid(yes - no)).toBeCloseTo(softmax, 15);
    expect(sigmoid(0)).toBe(0.5);
    expect(sigmoid(1000)).toBe(1);
    expect(sigmoid(-1000)).toBe(0);
    expect(sigmoid(-3) + sigmoid(3)).toBeCloseTo(1, 15);
  });
});

describe(byScore.name, () => {
  const score = (index: number, raw: number): RerankScore => ({
    index,
    raw,
    relevance: sigmoid(raw),
    truncated: false,
  });

  it('sorts highest first and keeps the request order between equal scores', () => {
    const sorted = byScore([score(0, 1), score(1, 3), score(2, 1), score(3, -2)]);
    expect(sorted.map((entry) => entry.index)).toEqual([1, 0, 2, 3]);
    // Logits of 40 and 50 both have relevance 1 in float64: equal to the client, so request order.
    expect(byScore([score(0, 40), score(1, 50)]).map((entry) => entry.index)).toEqual([0, 1]);
    expect(byScore([score(0, 40), score(1, 50)], 'raw').map((entry) => entry.index)).toEqual([1, 0]);
  });
});

import { performance } from 'node:perf_hooks';
import { Logger } from '@nestjs/common';
import { QueueFullError, RequestAbortedError, ServiceUnavailableError } from '@app/common';
import { EngineError } from '@app/engine/engine.port';
import { FakeEngine } from '@app/engine/testing';
import { MetricsService } from '@app/metrics/metrics.service';
import { BatchingOptions } from './batching.options';
import { BatchingService } from './batching.service';

/** Fills row j with the first token id of sequence j, so a test can tell which sequence a row came from. */
const firstIdRow = (tokenIds: Int32Array, dimensions: number): Float32Array =>
  new Float32Array(dimensions).fill(tokenIds[0]);

/** A sequence of `length` tokens whose first token is `id`. */
function seq(id: number, length = 3): Int32Array {
  const tokens = new Int32Array(length).fill(7);
  tokens[0] = id;
  return tokens;
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

async function until(predicate: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i += 1) {
    if (predicate()) return;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe(BatchingService.name, () => {
  let engine: FakeEngine;
  let metrics: MetricsService;
  let sut: BatchingService;

  function create(options: Partial<BatchingOptions> = {}, replicas = 1): void {
    // Batches finish when the test says so.
    engine = new FakeEngine({ info: { replicas }, row: firstIdRow, completion: 'manual' });
    metrics = new MetricsService();
    sut = new BatchingService(engine, metrics, {
      maxBatchTokens: 1000,
      maxBatchSequences: 100,
      maxQueueTokens: 10_000,
      maxQueuedRequests: 100,
      agingTokensPerSecond: 1000,
      drainTimeoutMs: 1000,
      requestDeadlineMs: 60_000,
      ...options,
    });
  }

  beforeAll(() => Logger.overrideLogger(false));
  beforeEach(() => create());

  it('packs sequences of concurrent requests into one forward batch', async () => {
    const a = sut.submit({ sequences: [seq(1), seq(2)], dimensions: 32 });
    const b = sut.submit({ sequences: [seq(3)], dimensions: 64 });
    await tick();
    expect(engine.calls).toHaveLength(1);
    const { batch } = engine.calls[0];
    expect(Array.from(batch.cuSeqlens)).toEqual([0, 3, 6, 9]);
    // Each request's sequences stay together (which request goes first depends on size and age).
    expect(Array.from(batch.dimensions).join()).toMatch(/^(32,32,64|64,32,32)$/);
    engine.calls[0].resolve();
    const [ra, rb] = await Promise.all([a, b]);
    expect(ra.embeddings.map((row) => [row.length, row[0]])).toEqual([
      [32, 1],
      [32, 2],
    ]);
    expect(rb.embeddings.map((row) => [row.length, row[0]])).toEqual([[64, 3]]);
    expect(ra.batches).toBe(1);
  });

  it('keeps every batch within the token budget and the sequence cap', async () => {
    create({ maxBatchTokens: 10, maxBatchSequences: 3 });
    engine.completion = 'timer';
    const lengths = [4, 4, 4, 2, 2, 2, 2, 9, 1];
    const result = await sut.submit({ sequences: lengths.map((n, i) => seq(i, n)), dimensions: 32 });
    expect(result.embeddings.map((row) => row[0])).toEqual(lengths.map((_, i) => i));
    for (const call of engine.calls) {
      const { cuSeqlens } = call.batch;
      expect(cuSeqlens.length - 1).toBeLessThanOrEqual(3);
      expect(cuSeqlens[cuSeqlens.length - 1]).toBeLessThanOrEqual(10);
    }
    expect(engine.calls.length).toBeGreaterThanOrEqual(4);
  });

  it('runs a sequence longer than the budget alone', async () => {
    create({ maxBatchTokens: 4 });
    engine.completion = 'timer';
    const result = await sut.submit({ sequences: [seq(1, 2), seq(2, 9), seq(3, 2)], dimensions: 32 });
    expect(result.embeddings.map((row) => row[0])).toEqual([1, 2, 3]);
    expect(engine.calls.map((_, i) => engine.sequences(i).map((s) => s.length))).toEqual([[2], [9], [2]]);
  });

  it('splits a large request over batches and reassembles its rows in input order', async () => {
    create({ maxBatchSequences: 4 });
    engine.completion = 'timer';
    const sequences = Array.from({ length: 23 }, (_, i) => seq(100 + i, 1 + ((i * 7) % 5)));
    const result = await sut.submit({ sequences, dimensions: 48 });
    expect(engine.calls.length).toBe(6);
    expect(result.embeddings.map((row) => row[0])).toEqual(sequences.map((s) => s[0]));
    expect(result.embeddings.every((row) => row.length === 48)).toBe(true);
    expect(result.batches).toBe(6);
  });

  it("carries each sequence's prompt length into the packed batch, across requests and batches", async () => {
    create({ maxBatchSequences: 3 });
    engine.completion = 'timer';
    // Each sequence starts with its own token id, which names its prompt length.
    const promptOf = new Map<number, number>();
    const a = { sequences: [seq(1, 5), seq(2, 4), seq(3, 6), seq(4, 5)], promptLengths: [3, 3, 2, 4] };
    const b = { sequences: [seq(5, 3), seq(6, 3)] };
    a.sequences.forEach((sequence, i) => promptOf.set(sequence[0], a.promptLengths[i]));
    b.sequences.forEach((sequence) => promptOf.set(sequence[0], 0));
    await Promise.all([sut.submit({ ...a, dimensions: 32 }), sut.submit({ ...b, dimensions: 32 })]);
    expect(engine.calls.length).toBeGreaterThan(1);
    let seen = 0;
    for (const { batch } of engine.calls) {
      const firsts = Array.from(batch.cuSeqlens.subarray(0, -1), (start) => batch.tokenIds[start]);
      expect(Array.from(batch.promptLengths ?? [])).toEqual(firsts.map((id) => promptOf.get(id)));
      seen += firsts.length;
    }
    expect(seen).toBe(6);
  });

  it('keeps exactly one batch in flight per replica', async () => {
    create({ maxBatchSequences: 1 }, 2);
    const results = Array.from({ length: 5 }, (_, i) => sut.submit({ sequences: [seq(i)], dimensions: 32 }));
    await tick();
    expect(engine.calls).toHaveLength(2);
    await tick();
    expect(engine.calls).toHaveLength(2); // the third is packed, not sent
    expect(sut.stats()).toMatchObject({ batchesInFlight: 2, queuedSequences: 3, replicas: 2 });
    engine.calls[0].resolve();
    await until(() => engine.calls.length === 3, 'the prepared batch');
    engine.completion = 'timer';
    engine.calls.slice(1).forEach((call) => call.resolve());
    const rows = await Promise.all(results);
    expect(rows.map((r) => r.embeddings[0][0])).toEqual([0, 1, 2, 3, 4]);
    expect(engine.maxRunning).toBe(2);
  });

  it('lets a newcomer join the batch packed ahead while it has room', async () => {
    const first = sut.submit({ sequences: [seq(1)], dimensions: 32 });
    await tick();
    const second = sut.submit({ sequences: [seq(2)], dimensions: 32 });
    await tick();
    const third = sut.submit({ sequences: [seq(3)], dimensions: 32 });
    await tick();
    engine.calls[0].resolve();
    await until(() => engine.calls.length === 2, 'second batch');
    expect(engine.sequences(1).map((s) => s[0])).toEqual([2, 3]);
    engine.calls[1].resolve();
    await Promise.all([first, second, third]);
  });

  it('sends short sequences first', async () => {
    create({ maxBatchTokens: 10 });
    const blocking = sut.submit({ sequences: [seq(0)], dimensions: 32 });
    await tick();
    const long = sut.submit({ sequences: [seq(1, 8)], dimensions: 32 });
    const short = sut.submit({ sequences: [seq(2, 3), seq(3, 3)], dimensions: 32 });
    await tick();
    engine.calls[0].resolve();
    await until(() => engine.calls.length === 2, 'second batch');
    expect(engine.sequences(1).map((s) => s[0])).toEqual([2, 3]);
    engine.completion = 'timer';
    engine.calls[1].resolve();
    await Promise.all([blocking, long, short]);
  });

  it('does not starve a long input behind a stream of short ones', async () => {
    create({ maxBatchTokens: 100, agingTokensPerSecond: 20_000 });
    engine.completion = 'timer';
    let stop = false;
    const shortOnes: Promise<unknown>[] = [];
    const feed = async () => {
      while (!stop) {
        // Keep plenty of short work waiting, always better placed than the long input on length alone.
        while (sut.stats().queuedSequences < 30) {
          shortOnes.push(sut.submit({ sequences: [seq(1, 10)], dimensions: 32 }));
        }
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    };
    const feeding = feed();
    await new Promise((resolve) => setTimeout(resolve, 5));
    const started = Date.now();
    await sut.submit({ sequences: [seq(2, 100)], dimensions: 32 });
    const waited = Date.now() - started;
    stop = true;
    await feeding;
    await Promise.all(shortOnes);
    expect(waited).toBeLessThan(1000);
  });

  it('answers 429 with Retry-After when the request cap is reached', async () => {
    create({ maxQueuedRequests: 2 });
    const a = sut.submit({ sequences: [seq(1)], dimensions: 32 });
    const b = sut.submit({ sequences: [seq(2)], dimensions: 32 });
    await expect(sut.submit({ sequences: [seq(3)], dimensions: 32 })).rejects.toBeInstanceOf(QueueFullError);
    await tick();
    engine.completion = 'timer';
    engine.calls[0].resolve();
    await Promise.all([a, b]);
    await expect(sut.submit({ sequences: [seq(4)], dimensions: 32 })).resolves.toBeDefined();
  });

  it('answers 429 when the queued tokens would pass the budget', async () => {
    create({ maxQueueTokens: 10 });
    const running = sut.submit({ sequences: [seq(1, 3)], dimensions: 32 });
    await tick();
    const waiting = sut.submit({ sequences: [seq(2, 6)], dimensions: 32 });
    const error = await sut.submit({ sequences: [seq(3, 6)], dimensions: 32 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(QueueFullError);
    expect((error as QueueFullError).retryAfterSeconds).toBeGreaterThanOrEqual(1);
    engine.completion = 'timer';
    engine.calls[0].resolve();
    await Promise.all([running, waiting]);
    const text = await metrics.render();
    expect(text).toContain('qwen3_embed_requests_rejected_total{reason="queue_full"} 1');
  });

  it('refuses at once a request whose expected wait passes its deadline, yet admits a smaller one', async () => {
    // Before any batch is measured the fake (1e6 weights, CPU) is assumed to run 25k tokens/s + 5 ms: 45 ms
    // for each of these 1000-token requests, held against the deadline with a 50% margin.
    create({ requestDeadlineMs: 150 });
    const running = sut.submit({ sequences: [seq(1, 1000)], dimensions: 32 });
    await tick();
    const queued = sut.submit({ sequences: [seq(2, 1000)], dimensions: 32 }); // ~135 ms with margin
    const error = await sut.submit({ sequences: [seq(3, 1000)], dimensions: 32 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(QueueFullError);
    expect(error).toMatchObject({ code: 'queue_full' });
    expect((error as QueueFullError).retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect((error as Error).message).toMatch(/past its deadline of 150 ms/);
    // A short one goes ahead of the queued long one, so it can still make its deadline.
    const short = sut.submit({ sequences: [seq(4, 10)], dimensions: 32 });
    // Its own deadline header can ask for more time.
    const patient = sut.submit({
      sequences: [seq(5, 1000)],
      dimensions: 32,
      deadline: performance.now() + 10_000,
    });
    engine.completion = 'timer';
    engine.calls[0].resolve();
    await Promise.all([running, queued, short, patient]);
    expect(await metrics.render()).toContain('qwen3_embed_requests_rejected_total{reason="deadline"} 1');
  });

  it('drops a queued request whose deadline passes before it starts', async () => {
    const running = sut.submit({ sequences: [seq(1)], dimensions: 32 });
    await tick();
    const late = sut.submit({ sequences: [seq(2)], dimensions: 32, deadline: performance.now() + 30 });
    const error = await late.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(QueueFullError);
    expect(error).toMatchObject({ code: 'deadline_exceeded' });
    expect(sut.stats()).toMatchObject({ pendingRequests: 1, queuedSequences: 0, queuedTokens: 0 });
    engine.calls[0].resolve();
    await running;
    await tick();
    expect(engine.calls).toHaveLength(1); // it never ran
    expect(await metrics.render()).toContain('qwen3_embed_requests_rejected_total{reason="expired"} 1');
  });

  it('drops a packed request at dispatch when the batch before it ran too long for its deadline', async () => {
    const running = sut.submit({ sequences: [seq(1)], dimensions: 32 });
    await tick();
    // Packed behind the running batch: ~45 ms of its own (prior), 1.5x margin, 100 ms deadline.
    const packed = sut.submit({
      sequences: [seq(2, 1000)],
      dimensions: 32,
      deadline: performance.now() + 100,
    });
    await tick();
    await new Promise((resolve) => setTimeout(resolve, 50)); // the running batch overruns
    engine.calls[0].resolve();
    await expect(packed).rejects.toMatchObject({ code: 'deadline_exceeded' });
    await running;
    expect(engine.calls).toHaveLength(1);
  });

  it('finishes requests one after another instead of interleaving their sequences', async () => {
    create({ maxBatchSequences: 4 });
    engine.completion = 'timer';
    // Mixed lengths: sequence-level short-first would take every request's short texts first.
    const lengths = [1, 8, 2, 7, 3, 6, 4, 5];
    const jobs = [0, 1, 2].map((r) => lengths.map((n, j) => seq(10 * r + j, n + r)));
    const finished: number[] = [];
    const results = await Promise.all(
      jobs.map((sequences) =>
        sut.submit({ sequences, dimensions: 32 }).then((result) => {
          finished.push(engine.calls.length);
          expect(result.embeddings.map((row) => row[0])).toEqual(sequences.map((s) => s[0]));
          return result;
        }),
      ),
    );
    // Each request ran in 2 batches of 4, the three of them one after another (a request's rows are
    // handed out once the next batch is already sent).
    expect(results.map((result) => result.batches)).toEqual([2, 2, 2]);
    expect(finished).toEqual([3, 5, 6]);
  });

  it('drops the parts not yet started of a long input whose client went away', async () => {
    create({ maxBatchSequences: 2 });
    const controller = new AbortController();
    const long = sut.submit({
      sequences: Array.from({ length: 10 }, (_, i) => seq(i + 1)),
      dimensions: 32,
      signal: controller.signal,
    });
    await tick();
    expect(engine.calls).toHaveLength(1);
    controller.abort();
    await expect(long).rejects.toBeInstanceOf(RequestAbortedError);
    expect(sut.stats()).toMatchObject({ pendingRequests: 0, queuedSequences: 0, queuedTokens: 0 });
    engine.calls[0].resolve();
    await tick();
    await tick();
    expect(engine.calls).toHaveLength(1);
  });

  it('drops the queued work of a client that went away', async () => {
    const running = sut.submit({ sequences: [seq(1)], dimensions: 32 });
    await tick();
    const controller = new AbortController();
    const gone = sut.submit({ sequences: [seq(2), seq(3)], dimensions: 32, signal: controller.signal });
    const staying = sut.submit({ sequences: [seq(4)], dimensions: 32 });
    await tick();
    controller.abort();
    await expect(gone).rejects.toBeInstanceOf(RequestAbortedError);
    expect(sut.stats()).toMatchObject({ pendingRequests: 2, queuedSequences: 1, queuedTokens: 3 });
    engine.calls[0].resolve();
    await until(() => engine.calls.length === 2, 'second batch');
    expect(engine.sequences(1).map((s) => s[0])).toEqual([4]);
    engine.calls[1].resolve();
    await Promise.all([running, staying]);
  });

  it('refuses work whose client is already gone', async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(
      sut.submit({ sequences: [seq(1)], dimensions: 32, signal: controller.signal }),
    ).rejects.toBeInstanceOf(RequestAbortedError);
    expect(engine.calls).toHaveLength(0);
  });

  it('fails only the requests of a failed batch', async () => {
    create({ maxBatchSequences: 1 });
    engine.completion = 'timer';
    engine.failWhen = (batch) =>
      batch.tokenIds[0] === 66 ? new EngineError('DEVICE_FAILED', 'GPU 0 fell off the bus') : undefined;
    const bad = sut.submit({ sequences: [seq(66)], dimensions: 32 });
    const good = sut.submit({ sequences: [seq(1)], dimensions: 32 });
    await expect(bad).rejects.toMatchObject({ code: 'DEVICE_FAILED' });
    await expect(good).resolves.toMatchObject({ batches: 1 });
  });

  it('splits a failing batch until the sequence at fault runs alone, failing only its request', async () => {
    engine.completion = 'timer';
    engine.failWhen = (batch) =>
      batch.tokenIds.includes(99)
        ? new EngineError('INVALID_ARGUMENT', 'token id 99 out of range')
        : undefined;
    // 40 concurrent requests of 1-3 sequences (80 in all) share one batch; one sequence is bad.
    const sequencesOf = (r: number) => Array.from({ length: 1 + (r % 3) }, (_, j) => seq(1000 + 10 * r + j));
    const jobs = Array.from({ length: 40 }, (_, r) => sequencesOf(r));
    jobs[17][1] = seq(99);
    const results = jobs.map((sequences) => sut.submit({ sequences, dimensions: 32 }));
    const settled = await Promise.allSettled(results);
    const n = jobs.flat().length;
    settled.forEach((outcome, r) => {
      if (r === 17) {
        expect(outcome).toMatchObject({
          status: 'rejected',
          reason: { name: 'InvalidRequestError', param: 'input', code: 'invalid_value' },
        });
        const { message } = (outcome as PromiseRejectedResult).reason as Error;
        expect(message).toMatch(/^input\[1\] could not be embedded/);
        expect(message).not.toContain('out of range'); // engine internals stay in the log
      } else {
        expect(outcome.status).toBe('fulfilled');
        const rows = (outcome as PromiseFulfilledResult<{ embeddings: Float32Array[] }>).value.embeddings;
        expect(rows.map((row) => row[0])).toEqual(jobs[r].map((sequence) => sequence[0]));
      }
    });
    // The first batch, then two halves per level down to the one sequence.
    expect(engine.calls.length).toBeLessThanOrEqual(1 + 2 * Math.ceil(Math.log2(n)));
    expect(await metrics.render()).toContain('qwen3_embed_batches_total{outcome="failed"} 1');
  });

  it('isolates two faulty sequences of different requests', async () => {
    engine.completion = 'timer';
    engine.failWhen = (batch) =>
      batch.tokenIds.includes(98) || batch.tokenIds.includes(99)
        ? new EngineError('INTERNAL', 'kernel said no')
        : undefined;
    const jobs = Array.from({ length: 16 }, (_, r) => [seq(500 + r)]);
    jobs[3] = [seq(98)];
    jobs[12] = [seq(99)];
    const settled = await Promise.allSettled(
      jobs.map((sequences) => sut.submit({ sequences, dimensions: 32 })),
    );
    expect(settled.map((outcome) => outcome.status === 'rejected')).toEqual(
      jobs.map((_, r) => r === 3 || r === 12),
    );
    // An engine fault (not a refusal of the input) keeps its code: 500 for that request, not 400.
    expect(settled[3]).toMatchObject({
      status: 'rejected',
      reason: { name: 'EngineError', code: 'INTERNAL' },
    });
    expect(engine.calls.length).toBeLessThanOrEqual(1 + 4 * Math.ceil(Math.log2(16)));
  });

  it('fails the whole batch at once when the engine is dead, without splitting', async () => {
    engine.completion = 'timer';
    engine.failWhen = () => new EngineError('DEVICE_FAILED', 'GPU 0 fell off the bus');
    const settled = await Promise.allSettled(
      Array.from({ length: 8 }, (_, r) => sut.submit({ sequences: [seq(r + 1)], dimensions: 32 })),
    );
    expect(settled.every((outcome) => outcome.status === 'rejected')).toBe(true);
    expect(engine.calls).toHaveLength(1);

    create();
    engine.completion = 'timer';
    engine.healthFailure = 'lost device';
    engine.failWhen = () => new EngineError('INTERNAL', 'cuda error');
    await Promise.allSettled([1, 2, 3].map((id) => sut.submit({ sequences: [seq(id)], dimensions: 32 })));
    expect(engine.calls).toHaveLength(1);
  });

  it('keeps out-of-memory of a sequence alone a 503-class engine error', async () => {
    engine.completion = 'timer';
    engine.failWhen = (batch) =>
      batch.tokenIds.includes(77) ? new EngineError('OUT_OF_MEMORY', 'CUDA OOM') : undefined;
    const big = sut.submit({ sequences: [seq(77)], dimensions: 32 });
    const small = sut.submit({ sequences: [seq(1)], dimensions: 32 });
    await expect(big).rejects.toMatchObject({ name: 'EngineError', code: 'OUT_OF_MEMORY' });
    await expect(small).resolves.toBeDefined();
  });

  it('fails a batch whose rows do not add up', async () => {
    const result = sut.submit({ sequences: [seq(1)], dimensions: 32 });
    await tick();
    engine.calls[0].batch.dimensions[0] = 16; // the fake now answers with too few floats
    engine.calls[0].resolve();
    await expect(result).rejects.toMatchObject({ code: 'INTERNAL' });
  });

  it('drains admitted work at shutdown and then refuses new work', async () => {
    const admitted = sut.submit({ sequences: [seq(1)], dimensions: 32 });
    await tick();
    const draining = sut.drain(1000);
    await expect(sut.submit({ sequences: [seq(2)], dimensions: 32 })).rejects.toBeInstanceOf(
      ServiceUnavailableError,
    );
    engine.calls[0].resolve();
    await draining;
    await expect(admitted).resolves.toBeDefined();
  });

  it('fails what is left when the drain times out', async () => {
    const stuck = sut.submit({ sequences: [seq(1)], dimensions: 32 });
    await tick();
    await sut.drain(10);
    await expect(stuck).rejects.toMatchObject({ reason: 'shutting_down' });
    expect(sut.stats().pendingRequests).toBe(0);
  });

  it('records batch sizes and queue depth for the metrics', async () => {
    engine.completion = 'timer';
    await Promise.all([
      sut.submit({ sequences: [seq(1, 4)], dimensions: 32 }),
      sut.submit({ sequences: [seq(2, 4)], dimensions: 32 }),
    ]);
    const text = await metrics.render();
    expect(text).toContain('qwen3_embed_batch_sequences_sum 2');
    expect(text).toContain('qwen3_embed_batch_tokens_sum 8');
    expect(text).toContain('qwen3_embed_batches_total{outcome="ok"} 1');
    expect(text).toContain('qwen3_embed_queue_tokens 0');
  });
});

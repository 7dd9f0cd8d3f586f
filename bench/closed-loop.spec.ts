import { closedLoop, listedModels, runClosedLoop, sendTimed } from './closed-loop';
import { FetchLike, ResponseLike } from './http-client';

const answer = (status: number, text: string, headers: Record<string, string> = {}): ResponseLike => ({
  ok: status >= 200 && status < 300,
  status,
  headers: { get: (name) => headers[name] ?? null, has: (name) => name in headers },
  text: () => Promise.resolve(text),
  json: () => Promise.resolve(JSON.parse(text) as unknown),
});

const request = { endpoint: 'http://x/v1/rerank', headers: {}, body: '{}', timeoutMs: 1000 };
const zero = { pairs: 0 };
const read = (text: string) => ({ ok: true, status: '200', pairs: Number(text) });

describe(sendTimed.name, () => {
  it('reads a 2xx answer with its timing headers, and fails a non-2xx one with zero counts', async () => {
    const ok: FetchLike = () => Promise.resolve(answer(200, '3', { 'x-inference-time-ms': '4.5' }));
    const refused: FetchLike = () => Promise.resolve(answer(429, 'x'.repeat(400)));

    const sut = await sendTimed(ok, request, zero, read);
    const failed = await sendTimed(refused, request, zero, read);

    expect(sut).toMatchObject({ ok: true, pairs: 3, stages: { inference: 4.5 } });
    expect(failed).toMatchObject({ ok: false, status: '429', pairs: 0 });
    expect(failed.error).toHaveLength(300);
  });

  it("tells a timeout from a network error, and counts a thrown read as 'network'", async () => {
    const timeout: FetchLike = () =>
      Promise.reject(Object.assign(new Error('late'), { name: 'TimeoutError' }));
    const refused: FetchLike = () => Promise.reject(new Error('ECONNREFUSED'));
    const garbled: FetchLike = () => Promise.resolve(answer(200, 'not json'));

    expect(await sendTimed(timeout, request, zero, read)).toMatchObject({ status: 'timeout', pairs: 0 });
    expect(await sendTimed(refused, request, zero, read)).toMatchObject({
      status: 'network',
      error: 'ECONNREFUSED',
    });
    expect(
      await sendTimed(garbled, request, zero, (text) => ({
        ok: true,
        status: '200',
        pairs: JSON.parse(text),
      })),
    ).toMatchObject({ ok: false, status: 'network', pairs: 0 });
  });
});

describe(runClosedLoop.name, () => {
  it('leaves the warm-up requests out and keeps at most `concurrency` in flight', async () => {
    let sent = 0;
    let inFlight = 0;
    let widest = 0;
    const progress: number[] = [];

    const sut = await runClosedLoop(
      { concurrency: 3, requests: 7, warmupRequests: 2, onProgress: (done) => progress.push(done) },
      async () => {
        const n = (sent += 1);
        inFlight += 1;
        widest = Math.max(widest, inFlight);
        await new Promise((resolve) => setImmediate(resolve));
        inFlight -= 1;
        return n;
      },
    );

    expect(sent).toBe(9);
    expect([...sut.outcomes].sort((a, b) => a - b)).toEqual([3, 4, 5, 6, 7, 8, 9]);
    expect(widest).toBe(3);
    expect(progress).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  it('runs nothing for zero requests', async () => {
    let sent = 0;
    await closedLoop(4, 0, () => Promise.resolve((sent += 1)));

    expect(sent).toBe(0);
  });
});

describe(listedModels.name, () => {
  it('is undefined when the server refuses or cannot be reached', async () => {
    const refused: FetchLike = () => Promise.resolve(answer(401, '{}'));
    const down: FetchLike = () => Promise.reject(new Error('ECONNREFUSED'));
    const listing: FetchLike = () => Promise.resolve(answer(200, '{"data":[{"id":"m","task":"rerank"}]}'));

    expect(await listedModels(refused, 'http://x', {}, 1000)).toBeUndefined();
    expect(await listedModels(down, 'http://x', {}, 1000)).toBeUndefined();
    expect(await listedModels(listing, 'http://x', {}, 1000)).toEqual([{ id: 'm', task: 'rerank' }]);
  });
});

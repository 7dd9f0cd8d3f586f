import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI from 'openai';
import { RunningNginx, startNginx } from './support/nginx';
import { Replica } from './support/replica';
import { metricValue, SERVED_MODEL, TEST_API_KEY } from './support/test-app';

type Phase = 'all-up' | 'r0-killed' | 'r0-restarting' | 'r0-back' | 'r1-draining' | 'r1-gone';

interface Outcome {
  id: string;
  phase: Phase;
  status: number | string;
}

const EMBEDDINGS_OK = 'qwen3_embed_http_requests_total{method="POST",route="/v1/embeddings",status="200"}';
const SHUTDOWN_TIMEOUT_MS = 5000;
const sleep = (ms: number) => new Promise((wait) => setTimeout(wait, ms));

/** A bounded, steady stream of embeddings requests (one every `intervalMs`), each tagged with an id. */
class SteadyLoad {
  phase: Phase = 'all-up';
  private readonly outcomes: Promise<Outcome>[] = [];
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly client: OpenAI,
    intervalMs: number,
    maxRequests: number,
  ) {
    this.timer = setInterval(() => {
      if (this.outcomes.length >= maxRequests) return clearInterval(this.timer);
      this.outcomes.push(this.send(this.outcomes.length));
    }, intervalMs);
  }

  private async send(n: number): Promise<Outcome> {
    const id = `scale-out-${n}`;
    const phase = this.phase;
    try {
      const res = await this.client.embeddings.create(
        { model: SERVED_MODEL, input: [`steady load ${n}`, 'a second text'] },
        { headers: { 'x-request-id': id } },
      );
      return { id, phase, status: res.data.length === 2 ? 200 : 'short response' };
    } catch (error) {
      return { id, phase, status: (error as { status?: number }).status ?? String(error) };
    }
  }

  get count(): number {
    return this.outcomes.length;
  }

  stop(): Promise<Outcome[]> {
    clearInterval(this.timer);
    return Promise.all(this.outcomes);
  }
}

/**
 * Three real service processes (demo model, CPU, one thread each) behind the real nginx running
 * docker/nginx/nginx.conf with loopback addresses: under steady load one replica is SIGKILLed and
 * restarted, another drained with SIGTERM, and no client request fails.
 */
describe('scale-out: three replicas behind nginx', () => {
  let replicas: Replica[];
  let nginx: RunningNginx;
  let client: OpenAI;

  beforeAll(async () => {
    replicas = [0, 1, 2].map(() => new Replica({ SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS) }));
    await Promise.all(replicas.map((replica) => replica.start()));
    nginx = await startNginx(replicas.map((replica) => replica.port));
    client = new OpenAI({ apiKey: TEST_API_KEY, baseURL: `${nginx.url}/v1`, maxRetries: 0, timeout: 30_000 });
  }, 150_000);

  afterAll(async () => {
    await nginx?.stop();
    await Promise.all((replicas ?? []).map((replica) => replica.stop('SIGKILL').catch(() => undefined)));
  });

  it('loses no request while a replica is killed, restarted and another drained', async () => {
    const [r0, r1, r2] = replicas;
    const port = (addr: string) => Number(addr.split(':').pop());
    /** The replica that answered each request (nginx's last upstream) and every one it tried. */
    const upstreams = () => {
      const byId = new Map<string, number[]>();
      for (const line of readFileSync(join(nginx.dir, 'access.log'), 'utf8').split('\n')) {
        if (!line.includes('"request_id":"scale-out-')) continue;
        const entry = JSON.parse(line) as { request_id: string; upstream: string };
        byId.set(entry.request_id, entry.upstream.split(', ').map(port));
      }
      return byId;
    };

    // ~6-7 requests/s; at most 400 (about 60 s), whatever happens.
    const load = new SteadyLoad(client, 150, 400);
    await sleep(3000);

    load.phase = 'r0-killed';
    expect(await r0.stop('SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });
    await sleep(4000);

    load.phase = 'r0-restarting';
    await r0.start(); // the same address, as a restarted container or pod that keeps its name
    load.phase = 'r0-back';
    // nginx rests a failed server for fail_timeout (10 s), then tries it again.
    const pickedUpBy = Date.now() + 30_000;
    while (metricValue(await r0.metrics(), EMBEDDINGS_OK) === 0 && Date.now() < pickedUpBy) await sleep(250);
    expect(metricValue(await r0.metrics(), EMBEDDINGS_OK)).toBeGreaterThan(0);

    load.phase = 'r1-draining';
    const drainStarted = Date.now();
    const r1Metrics = await r1.metrics();
    const exit = await r1.stop('SIGTERM');
    const drainMs = Date.now() - drainStarted;
    load.phase = 'r1-gone';
    await sleep(2000);
    const outcomes = await load.stop();

    // Zero failed client requests, through a kill, a restart and a drain.
    const failed = outcomes.filter((outcome) => outcome.status !== 200);
    expect(failed).toEqual([]);
    expect(outcomes.length).toBeGreaterThanOrEqual(60);
    // Nest re-raises the signal once its shutdown hooks have run: a graceful exit ends by SIGTERM or 0.
    expect([0, 'SIGTERM']).toContain(exit.code ?? exit.signal);
    expect(drainMs).toBeLessThan(SHUTDOWN_TIMEOUT_MS + 5000);

    const tried = upstreams();
    const served = (phase: Phase) =>
      new Set(outcomes.filter((o) => o.phase === phase).map((o) => tried.get(o.id)!.at(-1)));
    expect(outcomes.every((o) => tried.has(o.id))).toBe(true);
    // Before the kill all three served; while r0 was down the other two took all of its traffic,
    // some of it retried away from r0 by nginx; once back, r0 served again; r1 gone, r0 and r2 served.
    expect(served('all-up')).toEqual(new Set([r0.port, r1.port, r2.port]));
    expect(served('r0-killed')).toEqual(new Set([r1.port, r2.port]));
    // (A request sent just before the kill may be the one nginx first tried on the dead r0.)
    const movedAway = outcomes.filter(
      (o) =>
        ['all-up', 'r0-killed'].includes(o.phase) &&
        tried.get(o.id)!.length > 1 &&
        tried.get(o.id)![0] === r0.port,
    );
    expect(movedAway.length).toBeGreaterThan(0);
    // (Its first request may have come in the moment between ready and the phase change.)
    expect([...served('r0-restarting'), ...served('r0-back')]).toContain(r0.port);
    expect([...served('r1-gone')].sort()).toEqual([r0.port, r2.port].sort());

    // /metrics per replica, straight from each process: the queue gauge the autoscaler reads, and the
    // request count that nginx's log attributes to that replica.
    expect(r1Metrics).toMatch(/^qwen3_embed_queue_tokens\{model="[^"]+"\} \d+$/m);
    for (const replica of [r0, r2]) {
      const text = await replica.metrics();
      expect(text).toMatch(/^qwen3_embed_queue_tokens\{model="[^"]+"\} \d+$/m);
      const attributed = outcomes.filter((o) => tried.get(o.id)!.at(-1) === replica.port);
      // r0's counter restarted with its process: only what it served after the kill is its new process's.
      const sinceStart = replica === r0 ? attributed.filter((o) => o.phase !== 'all-up') : attributed;
      expect(metricValue(text, EMBEDDINGS_OK)).toBe(sinceStart.length);
    }
  }, 150_000);
});

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import OpenAI, { APIError } from 'openai';
import type { RunningApp } from '../apps/api/src/app.factory';
import {
  CONTAINER_LIMITS,
  podman,
  podmanStatus,
  RunningContainer,
  startContainer,
  waitReady,
} from './support/container';
import { cosine, DEMO_MODEL, SERVED_MODEL, startTestApp, TEST_API_KEY } from './support/test-app';
import { IMAGE, IMAGE_CA_MARKER as CA_MARKER } from './support/test-env';

const GRACE_SECONDS = 20;
const SHUTDOWN_TIMEOUT_MS = 8000;

const client = (url: string) =>
  new OpenAI({ apiKey: TEST_API_KEY, baseURL: `${url}/v1`, maxRetries: 0, timeout: 60_000 });

/** Eight texts of mixed length; the timed set is six such requests. */
const texts = (round: number) =>
  Array.from(
    { length: 8 },
    (_, i) =>
      `request ${round} text ${i}: ${'the quick brown fox jumps over the lazy dog and keeps running '.repeat(1 + (i % 4))}`,
  );

async function timeRequests(sdk: OpenAI, requests: string[][]): Promise<number> {
  const started = performance.now();
  for (const input of requests) await sdk.embeddings.create({ model: SERVED_MODEL, input });
  return performance.now() - started;
}

/** The first `code` along an error's cause chain (ECONNREFUSED, ECONNRESET, UND_ERR_...). */
function causeCode(error: unknown): string | undefined {
  for (let e = error as { code?: unknown; cause?: unknown } | undefined; e; e = e.cause as typeof e) {
    if (typeof e.code === 'string' && e !== error) return e.code;
  }
  return undefined;
}

type Outcome = 'ok' | 'draining' | 'refused' | `lost: ${string}`;

/** What one request under shutdown came to; anything but the first three is a lost request. */
function classify(error: unknown): Outcome {
  if (error instanceof APIError && error.status === 503) {
    const body = error.error as Record<string, unknown> | undefined;
    const envelope = body && ['message', 'type', 'param', 'code'].every((key) => key in body);
    return envelope ? 'draining' : `lost: 503 without the envelope (${JSON.stringify(body)})`;
  }
  if (error instanceof APIError && error.status !== undefined) return `lost: HTTP ${error.status}`;
  const code = causeCode(error);
  // Never connected: the listener was already closed. Not an accepted request.
  if (code === 'ECONNREFUSED' || code === 'UND_ERR_CONNECT_TIMEOUT') return 'refused';
  return `lost: ${code ?? (error as Error).message}`;
}

/**
 * The CPU image (docker/Dockerfile.cpu) as a user runs it: podman + runc, port on the loopback, the demo
 * model generated at first start, then a model from a volume; against the same app on this host.
 */
describe(`CPU image ${IMAGE}`, () => {
  const suffix = `${process.pid}-${Date.now()}`;
  let host: RunningApp;
  let bare: RunningContainer;
  let hostClient: OpenAI;
  let imageClient: OpenAI;

  beforeAll(async () => {
    await podman(['image', 'exists', IMAGE]).catch(() => {
      throw new Error(`no image ${IMAGE}: \`make test-image\` builds it`);
    });
    host = await startTestApp();
    // No model mounted: the entrypoint writes the demo model, then the server loads it.
    bare = await startContainer(IMAGE, `qwen3-image-bare-${suffix}`, {
      env: { API_KEY: TEST_API_KEY, LOG_LEVEL: 'warn' },
    });
    const readyMs = await waitReady(bare, 240_000);
    process.stdout.write(
      `image ${IMAGE}: ready ${(readyMs / 1000).toFixed(1)} s after start (demo model generated)\n`,
    );
    hostClient = client(host.url);
    imageClient = client(bare.url);
  });

  afterAll(async () => {
    await bare?.remove();
    await host?.app.close();
  });

  it('runs as non-root with a healthcheck on /health/ready and port 6008, and reports its size', async () => {
    const [image] = JSON.parse(await podman(['image', 'inspect', IMAGE]));
    expect(image.Config.User).toBe('1000:1000'); // numeric: Kubernetes' runAsNonRoot checks it
    expect(Object.keys(image.Config.ExposedPorts ?? {})).toEqual(['6008/tcp']);
    expect(JSON.stringify(image.Healthcheck?.Test)).toContain('/health/ready');
    expect(await podman(['exec', bare.name, 'id', '-u'])).toBe('1000');
    // The image's own healthcheck command, run by podman in the container.
    expect((await podmanStatus(['healthcheck', 'run', bare.name])).code).toBe(0);
    expect(await bare.logs()).toContain('generating the demo model');

    const bytes = Number(image.Size);
    process.stdout.write(`image ${IMAGE}: ${(bytes / 1e6).toFixed(0)} MB\n`);
    expect(bytes).toBeLessThan(1.6e9);
  });

  it('holds no compiler, no development package and no build-time CA certificate', async () => {
    const tools = await podman([
      'run',
      '--rm',
      ...CONTAINER_LIMITS,
      '--entrypoint',
      'sh',
      IMAGE,
      '-c',
      'for t in gcc g++ cc c++ cpp clang cmake make ld as nvcc; do command -v $t; done; ' +
        "dpkg-query -W -f '${Package}\\n' | grep -E -- '-dev(:amd64)?$'; ls -d /usr/include/torch /usr/include/ATen 2>/dev/null; true",
    ]);
    expect(tools).toBe('');

    // A certificate made for this build only was in the CA bundle handed to the build as a secret
    // (make test-image): none of its lines may be anywhere in the image.
    expect(CA_MARKER).toBeDefined();
    const lines = readFileSync(resolve(CA_MARKER as string), 'utf8')
      .split('\n')
      .filter((line) => /^[A-Za-z0-9+/]{64}$/.test(line));
    expect(lines.length).toBeGreaterThan(5);
    const probe = lines.slice(2, 4).flatMap((line) => ['-e', line]);
    const found = await podmanStatus(
      [
        'run',
        '--rm',
        ...CONTAINER_LIMITS,
        '--user',
        '0',
        '--entrypoint',
        'grep',
        IMAGE,
        '-rlsF',
        '--exclude-dir=proc',
        '--exclude-dir=sys',
        '--exclude-dir=dev',
        ...probe,
        '/',
      ],
      240_000,
    );
    expect(found).toEqual({ code: 1, stdout: '' }); // grep: 1 = no match
  });

  it('embeds through the openai SDK as the host does', async () => {
    const input = [...texts(0), '你好，世界', 'short'];
    const [fromImage, fromHost] = await Promise.all([
      imageClient.embeddings.create({ model: SERVED_MODEL, input }),
      hostClient.embeddings.create({ model: SERVED_MODEL, input }),
    ]);
    expect(fromImage.model).toBe(SERVED_MODEL);
    expect(fromImage.usage).toEqual(fromHost.usage);
    expect(fromImage.data).toHaveLength(input.length);
    for (let i = 0; i < input.length; i += 1) {
      expect(cosine(fromImage.data[i].embedding, fromHost.data[i].embedding)).toBeGreaterThan(0.99999);
    }
  });

  it("embeds at the host's speed: image/host time <= 1.5x on the same requests", async () => {
    const requests = Array.from({ length: 6 }, (_, round) => texts(round + 1));
    await timeRequests(imageClient, requests.slice(0, 2)); // warm both
    await timeRequests(hostClient, requests.slice(0, 2));
    // Alternating rounds, best of each side: other work on the machine hits both alike.
    const hostMs: number[] = [];
    const imageMs: number[] = [];
    for (let round = 0; round < 3; round += 1) {
      hostMs.push(await timeRequests(hostClient, requests));
      imageMs.push(await timeRequests(imageClient, requests));
    }
    const ratio = Math.min(...imageMs) / Math.min(...hostMs);
    process.stdout.write(
      `image/host on ${requests.length} requests x 8 texts: image ${imageMs.map((ms) => ms.toFixed(0)).join('/')} ms, ` +
        `host ${hostMs.map((ms) => ms.toFixed(0)).join('/')} ms, ratio ${ratio.toFixed(2)}\n`,
    );
    expect(ratio).toBeLessThanOrEqual(1.5);
  });

  it('on SIGTERM under load loses no accepted request and exits before its grace period', async () => {
    // The model from a read-only volume this time, as production runs it.
    const served = await startContainer(IMAGE, `qwen3-image-volume-${suffix}`, {
      env: {
        API_KEY: TEST_API_KEY,
        LOG_LEVEL: 'warn',
        MODEL_PATH: '/models/demo',
        SERVED_MODEL_NAME: SERVED_MODEL,
        SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
      },
      volumes: [`${DEMO_MODEL}:/models/demo:ro`],
    });
    try {
      await waitReady(served, 180_000);
      const sdk = client(served.url);
      const outcomes: Outcome[] = [];
      let inFlight = 0;
      let stopped = false;
      let refused = false;
      const worker = async (id: number) => {
        // Until the container is gone or refuses connections: each request counts once.
        for (let n = 0; !stopped && !refused; n += 1) {
          inFlight += 1;
          try {
            await sdk.embeddings.create({ model: SERVED_MODEL, input: texts(id * 1000 + n).slice(0, 4) });
            outcomes.push('ok');
          } catch (error) {
            const outcome = classify(error);
            outcomes.push(outcome);
            if (outcome === 'refused') refused = true;
          } finally {
            inFlight -= 1;
          }
        }
      };
      const workers = Array.from({ length: 8 }, (_, id) => worker(id));
      // Load established: a few answers back, every worker with a request in flight.
      const loadStarted = performance.now();
      while (outcomes.filter((o) => o === 'ok').length < 4 && performance.now() - loadStarted < 60_000) {
        await new Promise((resolveWait) => setTimeout(resolveWait, 100));
      }
      const okBefore = outcomes.filter((o) => o === 'ok').length;
      const inFlightAtStop = inFlight;
      const { seconds, exitCode } = await served.stop(GRACE_SECONDS);
      stopped = true;
      await Promise.all(workers);

      const lost = outcomes.filter((o) => o.startsWith('lost'));
      const count = (kind: Outcome) => outcomes.filter((o) => o === kind).length;
      process.stdout.write(
        `SIGTERM under load: ${inFlightAtStop} in flight at stop; ${count('ok')} ok (${okBefore} before), ` +
          `${count('draining')} 503 draining, ${count('refused')} refused, ${lost.length} lost ` +
          `${JSON.stringify([...new Set(lost)])}; exited ${exitCode} after ${seconds.toFixed(1)} s (grace ${GRACE_SECONDS} s)\n`,
      );
      expect(okBefore).toBeGreaterThan(0);
      expect(inFlightAtStop).toBeGreaterThan(0);
      expect(lost).toEqual([]);
      expect(seconds).toBeLessThan(GRACE_SECONDS - 2);
      expect(exitCode).not.toBe(137); // 137: killed at the end of the grace period
    } finally {
      await served.remove();
    }
  });
});

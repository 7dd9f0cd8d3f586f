import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { generateHubTestCheckpoint } from '@app/hub/testing/hub-test-checkpoint';
import { HubTestServer, repositoryFiles } from '@app/hub/testing/hub-test-server';
import { createApp, RunningApp } from '../apps/api/src/app.factory';
import { assertPrerequisites, cosine, readJson, TEST_API_KEY, TEST_SERVER_ENV } from './support/test-app';
import { E2E_LOG_LEVEL } from './support/test-env';

const MODEL_ID = 'acme/Qwen3-Embedding-test';
const COMMIT = 'fedcba9876543210fedcba9876543210fedcba98';
const TEXTS = ['The quick brown fox jumps over the lazy dog.', 'Embeddings by Hub id'];

/** Boots the real app (real addon, CPU) with the given model variables, without waiting for readiness. */
function boot(env: Record<string, string>): Promise<RunningApp> {
  return createApp({
    inheritProcessEnv: false,
    shutdownHooks: false,
    env: { ...TEST_SERVER_ENV, LOG_LEVEL: E2E_LOG_LEVEL, ...env },
  });
}

async function embed(running: RunningApp, model: string): Promise<number[][]> {
  const client = new OpenAI({ apiKey: TEST_API_KEY, baseURL: `${running.url}/v1`, maxRetries: 0 });
  const response = await client.embeddings.create({ model, input: TEXTS, encoding_format: 'float' });
  return response.data.map((row) => row.embedding);
}

/**
 * MODEL_ID end to end: the real app downloads a generated checkpoint from a local stand-in for the Hub
 * (HF_ENDPOINT), answers probes while it does, then embeds through the OpenAI SDK exactly as the same
 * checkpoint does when loaded from its directory.
 */
describe('MODEL_ID (models by Hub id)', () => {
  let work: string;
  let source: string;
  let server: HubTestServer;
  const apps: RunningApp[] = [];

  beforeAll(async () => {
    assertPrerequisites();
    work = await mkdtemp(join(tmpdir(), 'hub-e2e-'));
    source = join(work, 'checkpoint');
    await generateHubTestCheckpoint(source);
    server = await HubTestServer.start([
      { id: MODEL_ID, commit: COMMIT, files: await repositoryFiles(source) },
    ]);
  });

  afterAll(async () => {
    for (const running of apps) await running.app.close();
    await server?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('downloads before loading, live and not ready meanwhile, then serves the downloaded model', async () => {
    const cache = join(work, 'cache');
    let open!: () => void;
    server.faults.gate = {
      path: 'model-00001-of-00002.safetensors',
      open: new Promise<void>((resolve) => (open = resolve)),
    };
    const hubApp = await boot({ MODEL_ID, HF_ENDPOINT: server.url, HF_HUB_CACHE: cache });
    apps.push(hubApp);

    // Listening while the download is held: live, not ready, and saying why.
    const live = await fetch(`${hubApp.url}/health/live`);
    expect(live.status).toBe(200);
    // The shard is held, so this settles on "downloading" with the bytes so far.
    let status = 0;
    let body = '';
    for (let tries = 0; tries < 200 && !body.includes(' downloaded'); tries += 1) {
      if (tries > 0) await new Promise((resolve) => setTimeout(resolve, 50));
      const ready = await fetch(`${hubApp.url}/health/ready`);
      status = ready.status;
      body = JSON.stringify(await readJson(ready));
    }
    expect(status).toBe(503);
    expect(body).toContain('"state":"downloading"');
    expect(body).toMatch(
      /"reason":"acme\/Qwen3-Embedding-test: [\d.]+ (B|KiB|MiB) of 14\.\d MiB downloaded"/,
    );

    open();
    await hubApp.ready;
    const downloaded = await embed(hubApp, MODEL_ID);
    expect(downloaded).toHaveLength(2);
    expect(downloaded[0]).toHaveLength(32);

    // The same checkpoint loaded from its directory embeds the same.
    const pathApp = await boot({ MODEL_PATH: source });
    apps.push(pathApp);
    await pathApp.ready;
    const local = await embed(pathApp, 'checkpoint');
    downloaded.forEach((row, index) => expect(cosine(row, local[index])).toBeGreaterThan(0.99999));

    // HF_HUB_OFFLINE: served from the cache with the Hub gone.
    await server.close();
    const offlineApp = await boot({
      MODEL_ID,
      HF_HUB_OFFLINE: '1',
      HF_HUB_CACHE: cache,
      HF_ENDPOINT: server.url,
    });
    apps.push(offlineApp);
    await offlineApp.ready;
    const offline = await embed(offlineApp, 'Qwen3-Embedding-test');
    offline.forEach((row, index) => expect(cosine(row, downloaded[index])).toBeGreaterThan(0.99999));
  });
});

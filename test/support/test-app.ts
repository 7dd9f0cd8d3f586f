import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createApp, RunningApp } from '../../apps/api/src/app.factory';
import { E2E_LOG_LEVEL } from './test-env';

export { cosine, norm } from '@app/embeddings/embedding-similarity';

const ROOT = resolve(__dirname, '../..');
export const DEMO_MODEL = join(ROOT, 'models/Qwen3-Embedding-tiny');
export const NATIVE_ADDON = join(ROOT, 'build/native/Release/qwen3_embed.node');
export const TEST_API_KEY = 'e2e-test-key';
export const SERVED_MODEL = 'Qwen3-Embedding-tiny';

/** What every test server runs with: the real addon on the CPU, loopback, the test key; the model is each test's. */
export const TEST_SERVER_ENV: Record<string, string> = {
  DEVICE: 'cpu',
  HOST: '127.0.0.1',
  PORT: '0',
  API_KEY: TEST_API_KEY,
  NATIVE_ADDON_PATH: NATIVE_ADDON,
};

/**
 * The end-to-end tests run the real addon on the demo model; without them they fail here, saying what
 * to build, rather than skip.
 */
export function assertPrerequisites(): void {
  const missing: string[] = [];
  if (!existsSync(NATIVE_ADDON)) missing.push(`${NATIVE_ADDON} (make native)`);
  if (!existsSync(join(DEMO_MODEL, 'config.json'))) missing.push(`${DEMO_MODEL} (make demo-model)`);
  if (missing.length > 0) {
    throw new Error(`the end-to-end tests need ${missing.join(' and ')}; \`make install-dev\` builds both`);
  }
}

export interface StartOptions {
  /** Load the model (default true): false leaves the app answering 503 "loading". */
  load?: boolean;
}

/** Boots the real app in-process on a free loopback port, CPU, demo model, independent of the shell. */
export async function startTestApp(
  env: Record<string, string> = {},
  options: StartOptions = {},
): Promise<RunningApp> {
  assertPrerequisites();
  const running = await createApp({
    inheritProcessEnv: false,
    shutdownHooks: false,
    load: options.load,
    env: { ...TEST_SERVER_ENV, MODEL_PATH: DEMO_MODEL, LOG_LEVEL: E2E_LOG_LEVEL, ...env },
  });
  if (options.load !== false) {
    try {
      await running.ready;
    } catch (error) {
      await running.app.close();
      throw error;
    }
  }
  return running;
}

/** Reads one sample of a metric from the Prometheus text (0 when absent). */
export function metricValue(text: string, sample: string): number {
  for (const candidate of text.split('\n')) {
    // A model's series carry its id as `model` (the first label); samples are named without it.
    const line = candidate.replace(/\{model="[^"]*"\}/, '').replace(/\{model="[^"]*",/, '{');
    if (line.startsWith(`${sample} `)) return Number(line.slice(sample.length + 1));
  }
  return 0;
}

/** A response body for assertions (the tests check its shape). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = any;

export const readJson = (res: Response): Promise<Json> => res.json() as Promise<Json>;

import { createApp, CreateAppOptions, RunningApp } from '../app.factory';

/** The key the apps started by `startWithFakeEngine` accept. */
export const UNIT_TEST_KEY = 'unit-test-key';

/**
 * The whole HTTP app over a given (fake) engine, for unit specs: CPU, a free loopback port, no signal
 * handlers, nothing read from the shell; `env` adds or overrides variables. Resolves once ready.
 */
export async function startWithFakeEngine(
  engine: NonNullable<CreateAppOptions['engine']>,
  modelPath: string,
  env: Record<string, string> = {},
): Promise<RunningApp> {
  const running = await createApp({
    engine,
    inheritProcessEnv: false,
    shutdownHooks: false,
    env: {
      API_KEY: UNIT_TEST_KEY,
      MODEL_PATH: modelPath,
      DEVICE: 'cpu',
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: 'silent',
      ...env,
    },
  });
  await running.ready;
  return running;
}

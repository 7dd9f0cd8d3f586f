import { Logger } from '@nestjs/common';
import { createApp, RunningApp } from './app.factory';

/**
 * `node dist/apps/api/src/main.js [--demo]`. With --demo and no key configured, a random key is
 * generated for this run and printed (see docs/service.md).
 */
async function main(): Promise<void> {
  const demo = process.argv.includes('--demo');
  let running: RunningApp;
  try {
    running = await createApp({ demo });
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n`);
    process.exit(1);
  }
  const { app, config, url, generatedKey, ready } = running;
  const logger = new Logger('Main');
  const modelId = config.model.servedNames[0];
  const { hub } = config.model;
  const source = hub ? `${hub.modelId}@${hub.revision} (Hub cache ${hub.cacheDir})` : config.model.path;
  logger.log(`listening on ${url}; loading ${source} as ${modelId} on ${config.model.device}`);

  const shownKey = generatedKey ?? (demo ? config.auth.keys[0] : undefined);
  if (demo || generatedKey) {
    const lines = [
      '',
      `Qwen3 embedding server on ${url} (model ${modelId}, ${config.model.device})`,
      `  docs:    ${url}/docs`,
      `  health:  ${url}/health`,
    ];
    if (config.auth.disabled) {
      lines.push('  auth:    disabled (AUTH_DISABLED=true)');
    } else if (shownKey) {
      lines.push(
        `  API key: ${shownKey}${generatedKey ? '   (generated for this run; set API_KEY to choose one)' : ''}`,
        `  try:     curl ${url}/v1/embeddings -H 'Authorization: Bearer ${shownKey}' -H 'Content-Type: application/json' -d '{"model":"${modelId}","input":"hello"}'`,
      );
    }
    process.stdout.write(`${lines.join('\n')}\n\n`);
  }

  try {
    await ready;
    logger.log(`ready: ${modelId} serves on ${url}`);
  } catch (error) {
    logger.error({ err: error }, `cannot serve ${source}: ${(error as Error).message}`);
    await app.close().catch(() => undefined);
    process.exit(1);
  }
}

void main();

import { Logger } from '@nestjs/common';
import { keyPrefix } from '@app/auth';
import { createApp, RunningApp } from './app.factory';

/** A path as one shell word. */
function shellQuote(path: string): string {
  return /^[\w./-]+$/.test(path) ? path : `'${path.replace(/'/g, `'\\''`)}'`;
}

/**
 * `node dist/apps/api/src/main.js [--demo]`. With --demo and no key configured, a random key is
 * generated into .demo/api-key (mode 0600; reused by later runs) and only its prefix is printed, with
 * the line that exports it (see docs/service.md).
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
  const { app, config, url, generatedKey, ready, shutdown } = running;
  const logger = new Logger('Main');
  const modelId = config.model.servedNames[0];
  const { hub } = config.model;
  const source = hub ? `${hub.modelId}@${hub.revision} (Hub cache ${hub.cacheDir})` : config.model.path;
  logger.log(`listening on ${url}; loading ${source} as ${modelId} on ${config.model.device}`);

  if (demo || generatedKey) {
    const lines = [
      '',
      `Qwen3 embedding server on ${url} (model ${modelId}, ${config.model.device})`,
      `  docs:    ${url}/docs`,
      `  health:  ${url}/health`,
    ];
    // The key itself is never printed (terminals, CI logs and screen shares keep it): a prefix, and
    // where to read it.
    if (config.auth.disabled) {
      lines.push('  auth:    disabled (AUTH_DISABLED=true)');
    } else if (generatedKey) {
      lines.push(
        `  API key: ${keyPrefix(generatedKey)}   (generated for this checkout, kept in ${config.auth.demoKeyFile}, mode 0600; set API_KEY to choose one)`,
        `  use it:  export KEY=$(cat ${shellQuote(config.auth.demoKeyFile)})`,
      );
    } else if (config.auth.keys.length > 0) {
      lines.push(
        `  API key: ${keyPrefix(config.auth.keys[0])}   (from API_KEY / API_KEYS; export KEY=<that key>)`,
      );
    } else {
      lines.push('  API key: from API_KEYS_FILE (export KEY=<one of its keys>)');
    }
    if (!config.auth.disabled) {
      lines.push(
        `  try:     curl ${url}/v1/embeddings -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' -d '{"model":"${modelId}","input":"hello"}'`,
      );
    }
    process.stdout.write(`${lines.join('\n')}\n\n`);
  }

  try {
    await ready;
    if (!shutdown?.started) logger.log(`ready: ${modelId} serves on ${url}`);
  } catch (error) {
    if (shutdown?.started) {
      return; // a signal during the load (or the download) cancelled it; the shutdown exits
    }
    logger.error({ err: error }, `cannot serve ${source}: ${(error as Error).message}`);
    await app.close().catch(() => undefined);
    process.exit(1);
  }
}

void main();

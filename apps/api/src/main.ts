import { Logger } from '@nestjs/common';
import { keyPrefix } from '@app/auth';
import { buildInfo } from '@app/common';
import { loggableConfig, parseServerArguments, serverArgumentsHelp, ServerArguments } from '@app/config';
import { createApp, RunningApp } from './app.factory';

/** A path as one shell word. */
function shellQuote(path: string): string {
  return /^[\w./-]+$/.test(path) ? path : `'${path.replace(/'/g, `'\\''`)}'`;
}

const COMMAND = 'node dist/apps/api/src/main.js';

/**
 * `node dist/apps/api/src/main.js [--demo] [--model-path DIR --port N ...]`: one flag per environment
 * variable (`--help`), winning over the environment. With --demo and no key configured, a random key
 * is generated into .demo/api-key (mode 0600; reused by later runs) and only its prefix is printed,
 * with the line that exports it (see docs/operations.md).
 */
async function main(): Promise<void> {
  let args: ServerArguments;
  try {
    args = parseServerArguments(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n`);
    process.exit(2);
  }
  if (args.help) {
    process.stdout.write(serverArgumentsHelp(COMMAND));
    return;
  }
  const demo = args.demo;
  let running: RunningApp;
  try {
    running = await createApp({ demo, env: args.env });
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n`);
    process.exit(1);
  }
  const { app, config, url, generatedKey, ready, shutdown } = running;
  const logger = new Logger('Main');
  const modelId = config.model.servedNames[0];
  const sources = config.models.map(({ model }) => {
    const { hub } = model;
    const source = hub ? `${hub.modelId}@${hub.revision} (Hub cache ${hub.cacheDir})` : model.path;
    return `${source} as ${model.servedNames[0]} on ${model.device}`;
  });
  const source = sources.join('; ');
  const { version, commit } = buildInfo();
  logger.log(
    { version, commit, config: loggableConfig(config) },
    `qwen3-embed-server ${version} (${commit}): listening on ${url}; loading ${source}`,
  );

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
    lines.push('  loading the model: /health/ready answers 503 until it is ready');
    process.stdout.write(`${lines.join('\n')}\n\n`);
  }

  try {
    await ready;
    if (!shutdown?.started) {
      const served = config.models.map(({ model }) => model.servedNames[0]).join(', ');
      logger.log(`ready: ${served} on ${url}`);
    }
    // Only now: before, the request would answer 503.
    if ((demo || generatedKey) && !shutdown?.started) {
      const auth = config.auth.disabled ? '' : ' -H "Authorization: Bearer $KEY"';
      process.stdout.write(
        `\n  ready:   ${modelId}; try: curl ${url}/v1/embeddings${auth} -H 'Content-Type: application/json' -d '{"model":"${modelId}","input":"hello"}'\n\n`,
      );
    }
  } catch (error) {
    if (shutdown?.started) {
      return; // a signal during the load (or the download) cancelled it; the shutdown exits
    }
    // With several models the message names the entry that failed (MODELS[i]).
    const what = config.models.length > 1 ? 'the models' : source;
    logger.error({ err: error }, `cannot serve ${what}: ${(error as Error).message}`);
    await app.close().catch(() => undefined);
    process.exit(1);
  }
}

void main();

import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseEnv } from 'node:util';
import { AppConfig, loadAppConfig } from './app-config';

/** Where the server looks when MODEL_PATH is unset, and the model `make serve` generates and serves. */
export const DEFAULT_MODEL_PATH = './models/Qwen3-Embedding-4B';
export const DEMO_MODEL_PATH = './models/Qwen3-Embedding-tiny';
/** How to create the demo model, named by errors about a missing model directory. */
export const DEMO_MODEL_COMMAND = 'npm run admin -- checkpoint generate --preset tiny';

export interface ToolConfig {
  config: AppConfig;
  /** The defaults chosen for the user (printed, so nothing happens silently). */
  notes: string[];
}

/**
 * The service's configuration for a command-line tool (`admin embed`, `check-gpu`): this process's
 * environment over the working directory's `.env` (as the server reads them), under the command's
 * options; no API key needed. Where neither names a model or a device, it picks what `make serve`
 * serves: the demo model when the default 4B directory is absent, and the CPU when `hasCuda(addon)`
 * finds no GPU. With MODELS, the tool takes its first entry, unless its options name a model.
 */
export function loadToolConfig(
  overrides: Record<string, string | undefined>,
  hasCuda: (nativeAddonPath: string | undefined) => boolean,
  envFile = '.env',
): ToolConfig {
  const env = toolEnvironment(overrides, envFile);
  const notes: string[] = [];
  const unset = (name: string) => (env[name] ?? '').trim() === '';
  if (overrides.MODEL_PATH !== undefined || overrides.MODEL_ID !== undefined) delete env.MODELS;
  if (
    unset('MODELS') &&
    unset('MODEL_PATH') &&
    unset('MODEL_ID') &&
    !existsSync(DEFAULT_MODEL_PATH) &&
    existsSync(DEMO_MODEL_PATH)
  ) {
    env.MODEL_PATH = DEMO_MODEL_PATH;
    notes.push(`MODEL_PATH unset and ${DEFAULT_MODEL_PATH} absent: using the demo model ${DEMO_MODEL_PATH}`);
  }
  if (unset('DEVICE') && !hasCuda(unset('NATIVE_ADDON_PATH') ? undefined : env.NATIVE_ADDON_PATH)) {
    env.DEVICE = 'cpu';
    notes.push('DEVICE unset and no CUDA GPU: using the CPU');
  }
  return { config: loadAppConfig(env), notes };
}

/**
 * The service's configuration as the bench scripts (bench/*.ts) read it beside their own flags, e.g.
 * NATIVE_ADDON_PATH and BUSY_POLL_LINGER_MS: the environment over `.env`, validated as the server's
 * is; no key needed, and no model or device picked (a bench names its own).
 */
export function loadBenchConfig(envFile = '.env'): AppConfig {
  return loadAppConfig(toolEnvironment({}, envFile));
}

/** This process's environment over `.env`, under `overrides`; a tool needs no key and no warm-up. */
function toolEnvironment(
  overrides: Record<string, string | undefined>,
  envFile: string,
): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = {
    ...readEnvFile(envFile),
    ...process.env,
    AUTH_DISABLED: 'true',
    WARMUP: 'false',
  };
  for (const [name, value] of Object.entries(overrides)) if (value !== undefined) env[name] = value;
  return env;
}

function readEnvFile(path: string): Record<string, string> {
  try {
    return parseEnv(readFileSync(resolve(path), 'utf8')) as Record<string, string>;
  } catch {
    return {}; // no .env: the environment alone
  }
}

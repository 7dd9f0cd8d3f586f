import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { DEMO_KEY_FILE } from './app-config';

/** A key a client of this checkout's server can send, and where it was found. */
export interface ClientApiKey {
  key: string;
  source: 'API_KEY' | 'KEY' | typeof DEMO_KEY_FILE;
}

/**
 * The key the first run hands out, found the way its banner says to use it: `$API_KEY` (its first
 * entry) when the server was given one, else `$KEY` (the README's `export KEY=...`), else the demo key
 * that `make serve` wrote to .demo/api-key in the working directory. Undefined when none is found.
 */
export function discoverClientApiKey(
  env: Record<string, string | undefined> = process.env,
  demoKeyFile = resolve(DEMO_KEY_FILE),
): ClientApiKey | undefined {
  const first = env.API_KEY?.split(',')[0]?.trim();
  if (first) return { key: first, source: 'API_KEY' };
  const exported = env.KEY?.trim();
  if (exported) return { key: exported, source: 'KEY' };
  try {
    const demo = readFileSync(demoKeyFile, 'utf8').trim();
    return demo ? { key: demo, source: DEMO_KEY_FILE } : undefined;
  } catch {
    return undefined;
  }
}

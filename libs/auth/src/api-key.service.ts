import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { Injectable } from '@nestjs/common';
import { AppConfig } from '@app/config';

const SHA256_LINE = /^sha256:([0-9a-f]{64})$/i;

function sha256(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/**
 * Parses an API_KEYS_FILE: one key per line, or `sha256:<64 hex digits>` for a key stored only as its
 * digest. Blank lines and `#` comments are skipped. Returns the digests.
 */
export function parseApiKeysFile(content: string, source = 'API_KEYS_FILE'): Buffer[] {
  const digests: Buffer[] = [];
  content.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) {
      return;
    }
    if (line.toLowerCase().startsWith('sha256:')) {
      const match = SHA256_LINE.exec(line);
      if (!match) {
        throw new Error(`${source} line ${index + 1}: a sha256: entry needs exactly 64 hex digits`);
      }
      digests.push(Buffer.from(match[1], 'hex'));
      return;
    }
    digests.push(sha256(line));
  });
  return digests;
}

const DEMO_KEY = /^sk-demo-[\w-]{32}$/;

/**
 * The --demo key: the one kept in `file` by an earlier run, else a new random one written there
 * (mode 0600), so `export KEY=$(cat file)` works and keeps working across restarts while the key is
 * never printed.
 */
export function loadOrCreateDemoKey(file: string): string {
  if (existsSync(file)) {
    const kept = readFileSync(file, 'utf8').trim();
    if (DEMO_KEY.test(kept)) {
      chmodSync(file, 0o600);
      return kept;
    }
  }
  const key = `sk-demo-${randomBytes(24).toString('base64url')}`;
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    writeFileSync(file, `${key}\n`, { mode: 0o600 });
    chmodSync(file, 0o600); // writeFileSync keeps the mode of a file that existed
  } catch (error) {
    throw new Error(
      `--demo cannot keep its API key in ${file} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); run from a writable directory or set API_KEY`,
    );
  }
  return key;
}

/** The start of a key, enough to tell keys apart and never enough to use one. */
export function keyPrefix(key: string): string {
  const shown = key.startsWith('sk-demo-') ? 12 : Math.min(8, Math.floor(key.length / 4));
  return `${key.slice(0, shown)}…`;
}

/**
 * The accepted API keys, held only as SHA-256 digests. A presented key is hashed and compared with
 * every stored digest by `timingSafeEqual`, without stopping at a match, so neither the key's content
 * nor its position in the list shows in the response time.
 */
@Injectable()
export class ApiKeyService {
  private readonly digests: Buffer[];
  /** Set when --demo made (or found in `auth.demoKeyFile`) a key because none was configured. */
  readonly generatedKey?: string;

  constructor(config: AppConfig) {
    const { keys, keysFile, disabled, demo } = config.auth;
    const digests = keys.map(sha256);
    if (keysFile) {
      digests.push(...parseApiKeysFile(readFileSync(keysFile, 'utf8')));
    }
    if (digests.length === 0 && !disabled) {
      if (!demo) {
        throw new Error(`Invalid environment variables: API_KEYS_FILE: no keys in ${keysFile ?? '(unset)'}`);
      }
      this.generatedKey = loadOrCreateDemoKey(config.auth.demoKeyFile);
      digests.push(sha256(this.generatedKey));
    }
    this.digests = digests;
  }

  get count(): number {
    return this.digests.length;
  }

  verify(presented: string): boolean {
    const digest = sha256(presented);
    let match = false;
    for (const stored of this.digests) {
      // timingSafeEqual first: `||` must not skip the comparison once a match is found.
      match = timingSafeEqual(stored, digest) || match;
    }
    return match;
  }
}

import { createHash, randomBytes } from 'node:crypto';
import { Injectable } from '@nestjs/common';

export interface GeneratedApiKey {
  /** Give this to the client; it is shown once. */
  key: string;
  /** Put this line in API_KEYS_FILE: the server keeps only the digest. */
  digestLine: string;
}

/** New API keys: `sk-` + 32 random bytes (base64url), and the `sha256:<hex>` line the server accepts. */
@Injectable()
export class ApiKeyGenerator {
  create(random: (size: number) => Buffer = randomBytes): GeneratedApiKey {
    const key = `sk-${random(32).toString('base64url')}`;
    return { key, digestLine: ApiKeyGenerator.digestLine(key) };
  }

  static digestLine(key: string): string {
    return `sha256:${createHash('sha256').update(key, 'utf8').digest('hex')}`;
  }
}

import { parseApiKeysFile } from '@app/auth';
import { createHash } from 'node:crypto';
import { ApiKeyGenerator } from './api-key-generator';

describe(ApiKeyGenerator.name, () => {
  const sut = new ApiKeyGenerator();

  it('creates sk- keys of 32 random bytes, different every time', () => {
    const first = sut.create();
    const second = sut.create();

    expect(first.key).toMatch(/^sk-[A-Za-z0-9_-]{43}$/);
    expect(second.key).not.toBe(first.key);
  });

  it('prints the sha256 line of the key', () => {
    const { key, digestLine } = sut.create(() => Buffer.alloc(32, 7));

    expect(key).toBe(`sk-${Buffer.alloc(32, 7).toString('base64url')}`);
    expect(digestLine).toBe(`sha256:${createHash('sha256').update(key).digest('hex')}`);
  });

  it('writes a line the server accepts for that key and no other', () => {
    const { key, digestLine } = sut.create();

    const [digest] = parseApiKeysFile(`# issued today\n${digestLine}\n`);

    expect(digest.equals(createHash('sha256').update(key).digest())).toBe(true);
    expect(digest.equals(createHash('sha256').update(`${key}x`).digest())).toBe(false);
  });
});

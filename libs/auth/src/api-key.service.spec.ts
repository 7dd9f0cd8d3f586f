import * as crypto from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppConfig, AuthConfig, loadAppConfig } from '@app/config';
import { ApiKeyService, keyPrefix, parseApiKeysFile } from './api-key.service';

jest.mock('node:crypto', () => {
  const actual = jest.requireActual<typeof import('node:crypto')>('node:crypto');
  return { ...actual, timingSafeEqual: jest.fn(actual.timingSafeEqual) };
});

const sha256Hex = (value: string) => crypto.createHash('sha256').update(value).digest('hex');

function configWith(auth: Partial<AuthConfig>): AppConfig {
  const base = loadAppConfig({ AUTH_DISABLED: 'true' });
  return new AppConfig({ ...base, auth: { ...base.auth, disabled: false, ...auth } });
}

describe(ApiKeyService.name, () => {
  let dir: string;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'keys-'));
    jest.mocked(crypto.timingSafeEqual).mockClear();
  });

  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('accepts configured keys and nothing else', () => {
    const sut = new ApiKeyService(configWith({ keys: ['alpha', 'beta'] }));
    expect(sut.verify('alpha')).toBe(true);
    expect(sut.verify('beta')).toBe(true);
    expect(sut.verify('gamma')).toBe(false);
    expect(sut.verify('')).toBe(false);
    expect(sut.verify('alpha ')).toBe(false);
  });

  it('compares against every stored digest whatever matches, in constant time', () => {
    const sut = new ApiKeyService(configWith({ keys: ['k1', 'k2', 'k3'] }));
    for (const presented of ['k1', 'k3', 'wrong']) {
      jest.mocked(crypto.timingSafeEqual).mockClear();
      sut.verify(presented);
      expect(crypto.timingSafeEqual).toHaveBeenCalledTimes(3);
      for (const [stored, digest] of jest.mocked(crypto.timingSafeEqual).mock.calls) {
        // Equal-length digests: nothing about the presented key's length reaches the comparison.
        expect((stored as Buffer).length).toBe(32);
        expect((digest as Buffer).length).toBe(32);
      }
    }
  });

  it('reads plain and sha256: lines from API_KEYS_FILE, skipping blanks and comments', () => {
    const file = join(dir, 'keys');
    writeFileSync(file, `# team keys\n\nplain-key\n  sha256:${sha256Hex('hashed-key').toUpperCase()}  \r\n`);
    const sut = new ApiKeyService(configWith({ keysFile: file, keys: ['env-key'] }));
    expect(sut.count).toBe(3);
    expect(sut.verify('plain-key')).toBe(true);
    expect(sut.verify('hashed-key')).toBe(true);
    expect(sut.verify('env-key')).toBe(true);
    expect(sut.verify(`sha256:${sha256Hex('hashed-key')}`)).toBe(false);
  });

  it('rejects a malformed sha256: line with its line number', () => {
    expect(() => parseApiKeysFile('ok\nsha256:abc\n')).toThrow(
      'API_KEYS_FILE line 2: a sha256: entry needs exactly 64 hex digits',
    );
  });

  it('refuses to start with an empty keys file', () => {
    const file = join(dir, 'empty');
    writeFileSync(file, '# nothing yet\n');
    expect(() => new ApiKeyService(configWith({ keysFile: file }))).toThrow('API_KEYS_FILE: no keys in');
  });

  it('generates a random key in demo mode when none is configured, kept in a 0600 file', () => {
    const firstFile = join(dir, 'a', '.demo', 'api-key');
    const first = new ApiKeyService(configWith({ demo: true, demoKeyFile: firstFile }));
    const second = new ApiKeyService(configWith({ demo: true, demoKeyFile: join(dir, 'b', 'api-key') }));
    expect(first.generatedKey).toMatch(/^sk-demo-[\w-]{32}$/);
    expect(first.generatedKey).not.toBe(second.generatedKey);
    expect(first.verify(first.generatedKey!)).toBe(true);
    expect(first.verify(second.generatedKey!)).toBe(false);
    expect(readFileSync(firstFile, 'utf8')).toBe(`${first.generatedKey}\n`);
    expect(statSync(firstFile).mode & 0o777).toBe(0o600);
  });

  it('finds the demo key of an earlier run, and replaces a file that holds no demo key', () => {
    const file = join(dir, 'api-key');
    const first = new ApiKeyService(configWith({ demo: true, demoKeyFile: file }));
    chmodSync(file, 0o644);
    const again = new ApiKeyService(configWith({ demo: true, demoKeyFile: file }));
    expect(again.generatedKey).toBe(first.generatedKey);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    writeFileSync(file, 'not a key\n');
    const replaced = new ApiKeyService(configWith({ demo: true, demoKeyFile: file }));
    expect(replaced.generatedKey).toMatch(/^sk-demo-/);
    expect(readFileSync(file, 'utf8')).toBe(`${replaced.generatedKey}\n`);
  });

  it('says where it could not keep the demo key', () => {
    writeFileSync(join(dir, 'file'), '');
    expect(
      () => new ApiKeyService(configWith({ demo: true, demoKeyFile: join(dir, 'file', 'api-key') })),
    ).toThrow(
      /--demo cannot keep its API key in .*file\/api-key \(E[A-Z]+\); run from a writable directory or set API_KEY/,
    );
  });

  it('shows a key as a short prefix only', () => {
    expect(keyPrefix('sk-demo-abcdefghijklmnopqrstuvwxyz012345')).toBe('sk-demo-abcd…');
    expect(keyPrefix('0123456789abcdef0123456789abcdef')).toBe('01234567…');
    expect(keyPrefix('short-key')).toBe('sh…');
    expect(keyPrefix('k')).toBe('…');
  });

  it('uses configured keys in demo mode rather than generating one', () => {
    const sut = new ApiKeyService(configWith({ demo: true, keys: ['mine'] }));
    expect(sut.generatedKey).toBeUndefined();
  });
});

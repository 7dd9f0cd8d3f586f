import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { discoverClientApiKey } from './client-api-key';

describe(discoverClientApiKey.name, () => {
  let dir: string;
  let demoFile: string;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'client-key-'));
    demoFile = join(dir, 'api-key');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('takes the first API_KEY entry, then KEY, then the demo key file', () => {
    writeFileSync(demoFile, 'sk-demo-file\n');
    expect(discoverClientApiKey({ API_KEY: ' sk-a , sk-b', KEY: 'sk-k' }, demoFile)).toEqual({
      key: 'sk-a',
      source: 'API_KEY',
    });
    expect(discoverClientApiKey({ KEY: 'sk-k\n' }, demoFile)).toEqual({ key: 'sk-k', source: 'KEY' });
    expect(discoverClientApiKey({}, demoFile)).toEqual({ key: 'sk-demo-file', source: '.demo/api-key' });
  });

  it('finds nothing when no variable is set and no demo key was written', () => {
    expect(discoverClientApiKey({ API_KEY: '', KEY: '  ' }, demoFile)).toBeUndefined();
    writeFileSync(demoFile, '\n');
    expect(discoverClientApiKey({}, demoFile)).toBeUndefined();
  });
});

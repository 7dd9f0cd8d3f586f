/* eslint-disable no-restricted-properties -- the command reads the Hub settings (HF_ENDPOINT, ...) from the process environment, as from a user's shell */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HubModelDownloader } from '@app/hub';
import { generateHubTestCheckpoint } from '@app/hub/testing/hub-test-checkpoint';
import { HubTestServer, repositoryFiles } from '@app/hub/testing/hub-test-server';
import { DownloadModelCommand } from './model.command';

const COMMIT = 'abcdefabcdefabcdefabcdefabcdefabcdefabcd';
jest.setTimeout(60_000);

describe(DownloadModelCommand.name, () => {
  let work: string;
  let server: HubTestServer;
  const saved = { ...process.env };

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'admin-download-'));
    await generateHubTestCheckpoint(join(work, 'checkpoint'));
    server = await HubTestServer.start([
      { id: 'acme/embed', commit: COMMIT, files: await repositoryFiles(join(work, 'checkpoint')) },
    ]);
  });

  afterAll(async () => {
    process.env = saved;
    await server?.close();
    await rm(work, { recursive: true, force: true });
  });

  it('downloads into --cache-dir from HF_ENDPOINT and prints only the snapshot directory on stdout', async () => {
    process.env = { ...saved, HF_ENDPOINT: server.url, HF_HUB_OFFLINE: undefined, HF_TOKEN: undefined };
    const stdout: string[] = [];
    const stderr: string[] = [];
    jest.spyOn(process.stdout, 'write').mockImplementation((chunk) => (stdout.push(String(chunk)), true));
    jest.spyOn(process.stderr, 'write').mockImplementation((chunk) => (stderr.push(String(chunk)), true));
    const sut = new DownloadModelCommand(new HubModelDownloader());

    try {
      await sut.run(['acme/embed'], { cacheDir: join(work, 'cache'), revision: COMMIT });
    } finally {
      jest.restoreAllMocks();
    }

    const directory = join(work, 'cache', 'models--acme--embed', 'snapshots', COMMIT);
    expect(stdout).toEqual([`${directory}\n`]);
    expect(JSON.parse(await readFile(join(directory, 'config.json'), 'utf8'))).toMatchObject({
      hidden_size: 32,
    });
    expect(stderr.some((line) => /sha256 verified/.test(line))).toBe(true);
  });
});

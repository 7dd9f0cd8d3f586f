import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HubModelConfig } from '@app/config';
import { HubDownloadError } from './hub-download.error';
import { HubModelDownloader } from './hub-model-downloader';
import { generateHubTestCheckpoint } from './testing/hub-test-checkpoint';
import { HubTestFile, HubTestServer, repositoryFiles } from './testing/hub-test-server';

const COMMIT = '0123456789abcdef0123456789abcdef01234567';
const TOKEN = 'hf_granted';
// Generous for a loaded 2-core CI machine: a run takes a few seconds.
jest.setTimeout(60_000);

describe(HubModelDownloader.name, () => {
  let work: string;
  let checkpoint: HubTestFile[];
  let shard: HubTestFile;
  let server: HubTestServer;
  let cacheDir: string;
  const sut = new HubModelDownloader();
  let lines: string[];

  const config = (overrides: Partial<HubModelConfig> = {}): HubModelConfig => ({
    modelId: 'acme/embed',
    revision: 'main',
    endpoint: server.url,
    cacheDir,
    offline: false,
    ...overrides,
  });
  let progress: Array<[number, number]>;
  const download = (overrides: Partial<HubModelConfig> = {}) =>
    sut.download(config(overrides), {
      onProgress: (bytes, total) => progress.push([bytes, total]),
      log: (line) => lines.push(line),
      warn: (line) => lines.push(`WARN ${line}`),
      progressIntervalMs: 0,
      retryDelayMs: () => 10,
    });
  const failure = (promise: Promise<unknown>) =>
    promise.then(
      () => {
        throw new Error('expected the download to fail');
      },
      (error: unknown) => {
        expect(error).toBeInstanceOf(HubDownloadError);
        return error as HubDownloadError;
      },
    );

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'hub-download-'));
    await generateHubTestCheckpoint(join(work, 'checkpoint'));
    checkpoint = await repositoryFiles(join(work, 'checkpoint'));
    shard = checkpoint
      .filter((file) => file.path.endsWith('.safetensors'))
      .sort((a, b) => b.content.length - a.content.length)[0];
    // Files a Hub repository has that the server never reads.
    const extras: HubTestFile[] = [
      { path: 'README.md', content: Buffer.from('# acme/embed\n'), lfs: false },
      { path: 'onnx/model.onnx', content: Buffer.alloc(2 * 1024 * 1024, 1), lfs: true },
      { path: 'pytorch_model.bin', content: Buffer.alloc(1024 * 1024, 2), lfs: true },
    ];
    server = await HubTestServer.start([
      { id: 'acme/embed', commit: COMMIT, files: [...checkpoint, ...extras] },
      { id: 'acme/gated', commit: COMMIT, files: checkpoint, token: TOKEN, ungrantedToken: 'hf_not_granted' },
      {
        id: 'acme/huge',
        commit: COMMIT,
        files: [
          ...checkpoint,
          { path: 'model-huge.safetensors', content: Buffer.alloc(16), lfs: true, listedSize: 2 ** 52 },
        ],
      },
    ]);
  });

  afterAll(async () => {
    await server?.close();
    await rm(work, { recursive: true, force: true });
  });

  beforeEach(async () => {
    server.requests.length = 0;
    server.faults = {};
    lines = [];
    progress = [];
    cacheDir = await mkdtemp(join(work, 'cache-'));
  });

  it('downloads only the files the server loads, following the LFS redirect, into the huggingface_hub layout', async () => {
    const snapshot = await download();

    expect(snapshot.directory).toBe(join(cacheDir, 'models--acme--embed', 'snapshots', COMMIT));
    expect(snapshot.commit).toBe(COMMIT);
    for (const file of checkpoint) {
      expect((await readFile(join(snapshot.directory, file.path))).equals(file.content)).toBe(true);
    }
    const fetched = new Set(server.requests.filter((r) => r.file).map((r) => r.file));
    expect(fetched).toEqual(new Set(checkpoint.map((file) => file.path)));
    expect(
      server.requests.some((r) => r.status === 302 && r.url.includes(`/resolve/${COMMIT}/${shard.path}`)),
    ).toBe(true);
    expect(
      server.requests.some((r) => r.url.startsWith('/cdn/') && r.file === shard.path && r.status === 200),
    ).toBe(true);
    expect((await readFile(join(cacheDir, 'models--acme--embed', 'refs', 'main'), 'utf8')).trim()).toBe(
      COMMIT,
    );
    const blobs = await readdir(join(cacheDir, 'models--acme--embed', 'blobs'));
    expect(blobs.filter((name) => name.endsWith('.incomplete'))).toEqual([]);
    expect(lines.some((line) => /^downloading model-00001-of-00002\.safetensors/.test(line))).toBe(true);
    expect(lines.some((line) => /\(\d+%\), .*\/s$/.test(line))).toBe(true);
    expect(lines.some((line) => /sha256 verified/.test(line))).toBe(true);
    const total = checkpoint.reduce((sum, file) => sum + file.content.length, 0);
    expect(progress[progress.length - 1]).toEqual([total, total]);
    expect(progress.every(([bytes], index) => index === 0 || bytes >= progress[index - 1][0])).toBe(true);

    // A second start finds everything in the cache and fetches no file.
    server.requests.length = 0;
    const again = await download();
    expect(again.downloadedBytes).toBe(0);
    expect(server.requests.filter((r) => r.file)).toEqual([]);
  });

  it('resumes a cut connection with a Range request from the bytes on disk', async () => {
    const half = shard.content.length >> 1;
    server.faults.cut = { path: shard.path, bytes: half };

    const snapshot = await download();

    expect((await readFile(join(snapshot.directory, shard.path))).equals(shard.content)).toBe(true);
    const resumed = server.requests.filter(
      (r) => r.url.startsWith('/cdn/') && r.file === shard.path && /^bytes=[1-9]\d*-/.test(r.range ?? ''),
    );
    expect(resumed.length).toBe(1);
    expect(Number(/^bytes=(\d+)-/.exec(resumed[0].range!)![1])).toBeGreaterThan(0);
    expect(server.bytesServed(shard.path)).toBeLessThan(2 * shard.content.length);
    expect(lines.some((line) => line.startsWith(`WARN ${shard.path}: attempt 1 failed`))).toBe(true);
  });

  it('resumes the partial file a stopped run left behind', async () => {
    const sha = createHash('sha256').update(shard.content).digest('hex');
    const blobs = join(cacheDir, 'models--acme--embed', 'blobs');
    await mkdir(blobs, { recursive: true });
    const kept = 1_000_000;
    await writeFile(join(blobs, `${sha}.incomplete`), shard.content.subarray(0, kept));

    const snapshot = await download();

    expect((await readFile(join(snapshot.directory, shard.path))).equals(shard.content)).toBe(true);
    const fetches = server.requests.filter((r) => r.file === shard.path && r.url.startsWith('/cdn/'));
    expect(fetches.map((r) => r.range)).toEqual(['bytes=0-0', `bytes=${kept}-${shard.content.length - 1}`]);
    expect(server.bytesServed(shard.path)).toBe(1 + shard.content.length - kept);
  });

  it('lets two processes sharing a cache download each file once', async () => {
    // The shard is held until the second download waits for the first's lock, so they overlap.
    let open!: () => void;
    server.faults.gate = { path: shard.path, open: new Promise<void>((resolve) => (open = resolve)) };
    const both = Promise.all([download(), download()]);
    const waiting = / waiting for .*, which is downloading it into the same cache$/;
    for (let tries = 0; tries < 400 && !lines.some((line) => waiting.test(line)); tries += 1) {
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    open();
    const [first, second] = await both;

    expect(second.directory).toBe(first.directory);
    expect((await readFile(join(first.directory, shard.path))).equals(shard.content)).toBe(true);
    const fullFetches = server.requests.filter(
      (r) => r.file === shard.path && r.url.startsWith('/cdn/') && !r.range,
    );
    expect(fullFetches).toHaveLength(1);
    expect(lines).toContainEqual(
      expect.stringMatching(new RegExp(`^${shard.path}: waiting for .*, which is downloading it`)),
    );
    const blobs = await readdir(join(cacheDir, 'models--acme--embed', 'blobs'));
    expect(blobs.filter((name) => /\.(lock|incomplete)$/.test(name))).toEqual([]);
  });

  it('takes over the lock of a process that died (untouched for 30 s)', async () => {
    const sha = createHash('sha256').update(shard.content).digest('hex');
    const blobs = join(cacheDir, 'models--acme--embed', 'blobs');
    await mkdir(blobs, { recursive: true });
    const lock = join(blobs, `${sha}.lock`);
    await writeFile(lock, 'gone-host 1\n');
    const minuteAgo = new Date(Date.now() - 60_000);
    await utimes(lock, minuteAgo, minuteAgo);

    const snapshot = await download();

    expect((await readFile(join(snapshot.directory, shard.path))).equals(shard.content)).toBe(true);
    expect(existsSync(lock)).toBe(false);
  });

  it('retries a CDN 403 (an expired signed URL) with a freshly resolved URL', async () => {
    server.faults.expire = shard.path;

    const snapshot = await download();

    expect((await readFile(join(snapshot.directory, shard.path))).equals(shard.content)).toBe(true);
    expect(server.requests.some((r) => r.file === shard.path && r.status === 403)).toBe(true);
    expect(lines.some((line) => line.startsWith(`WARN ${shard.path}: attempt 1 failed (HTTP 403)`))).toBe(
      true,
    );
  });

  it("rejects a file whose sha256 differs from the Hub's and keeps none of it", async () => {
    server.faults.corrupt = shard.path;

    const error = await failure(download());

    expect(error.failure).toBe('integrity');
    expect(error.message).toMatch(
      new RegExp(`${shard.path} failed verification \\(sha256 [0-9a-f]{64} where the Hub lists`),
    );
    const repo = join(cacheDir, 'models--acme--embed');
    const blobs = await readdir(join(repo, 'blobs'));
    const sha = createHash('sha256').update(shard.content).digest('hex');
    expect(blobs.filter((name) => name.startsWith(sha))).toEqual([]);
    expect(existsSync(join(repo, 'snapshots', COMMIT, shard.path))).toBe(false);
  });

  it('names a repository that does not exist', async () => {
    const error = await failure(download({ modelId: 'acme/missing' }));
    expect(error.failure).toBe('not_found');
    expect(error.message).toBe(
      `model acme/missing not found on ${server.url} (HTTP 404): check MODEL_ID; a private repository also needs HF_TOKEN`,
    );
  });

  it('names an unknown revision', async () => {
    const error = await failure(download({ revision: 'v9' }));
    expect(error.failure).toBe('revision_not_found');
    expect(error.message).toMatch(/acme\/embed has no revision v9 .*MODEL_REVISION/);
  });

  it('asks for a token for a gated repository, rejects a bad or ungranted one, downloads with a good one', async () => {
    const gated = await failure(download({ modelId: 'acme/gated' }));
    expect(gated.failure).toBe('gated');
    expect(gated.message).toMatch(
      /acme\/gated is a gated model \(HTTP 401\): accept its conditions at .* and set HF_TOKEN/,
    );

    const bad = await failure(download({ modelId: 'acme/gated', token: 'hf_wrong' }));
    expect(bad.failure).toBe('unauthorized');
    expect(bad.message).toMatch(/rejected HF_TOKEN \(HTTP 401\)/);

    const ungranted = await failure(download({ modelId: 'acme/gated', token: 'hf_not_granted' }));
    expect(ungranted.failure).toBe('gated');
    expect(ungranted.message).toMatch(
      /acme\/gated is a gated model and HF_TOKEN's account has no access yet \(HTTP 403\)/,
    );

    const snapshot = await download({ modelId: 'acme/gated', token: TOKEN });
    expect(existsSync(join(snapshot.directory, 'config.json'))).toBe(true);
    // The token goes to the Hub, never to the CDN on another origin.
    const files = server.requests.filter((r) => r.file);
    expect(
      files.filter((r) => !r.url.startsWith('/cdn/')).every((r) => r.authorization === `Bearer ${TOKEN}`),
    ).toBe(true);
    expect(files.filter((r) => r.url.startsWith('/cdn/')).map((r) => r.authorization)).not.toContain(
      `Bearer ${TOKEN}`,
    );
    expect(files.some((r) => r.url.startsWith('/cdn/'))).toBe(true);
  });

  it('offline: serves a cached snapshot without any request, and names a cache miss', async () => {
    const online = await download();
    server.requests.length = 0;

    const offline = await download({ offline: true });
    expect(offline.directory).toBe(online.directory);
    expect(server.requests).toEqual([]);

    const miss = await failure(download({ offline: true, cacheDir: join(work, 'empty-cache') }));
    expect(miss.failure).toBe('offline_cache_miss');
    expect(miss.message).toMatch(
      /HF_HUB_OFFLINE is set and acme\/embed@main is not in the cache at .*empty-cache/,
    );
    expect(server.requests).toEqual([]);
  });

  it('falls back to a complete cached snapshot when the Hub cannot be reached', async () => {
    await download();
    const closed = await new Promise<string>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as AddressInfo;
        probe.close(() => resolve(`http://127.0.0.1:${port}`));
      });
    });
    const error = await failure(download({ endpoint: closed, cacheDir: join(work, 'other-cache') }));
    expect(error.failure).toBe('unreachable');
    expect(error.message).toContain(`cannot reach ${closed} for acme/embed (ECONNREFUSED)`);

    const snapshot = await download({ endpoint: closed });
    expect(snapshot.commit).toBe(COMMIT);
    expect(lines.some((line) => /^WARN cannot reach .*; using the cached snapshot/.test(line))).toBe(true);
  });

  it('refuses a download larger than the free space before fetching anything', async () => {
    const error = await failure(download({ modelId: 'acme/huge' }));
    expect(error.failure).toBe('disk_full');
    expect(error.message).toMatch(
      /not enough space for the download in .*: 4\.0 PiB|not enough space for the download in .* needed, .* free/,
    );
    expect(server.requests.filter((r) => r.file)).toEqual([]);
  });

  it('names a full disk met while writing (ENOSPC)', async () => {
    const sha = createHash('sha256').update(shard.content).digest('hex');
    const blobs = join(cacheDir, 'models--acme--embed', 'blobs');
    await mkdir(blobs, { recursive: true });
    // Writes to /dev/full fail with ENOSPC, as on a full volume.
    await symlink('/dev/full', join(blobs, `${sha}.incomplete`));

    const error = await failure(download());
    expect(error.failure).toBe('disk_full');
    expect(error.message).toMatch(
      new RegExp(`no space left on the device .* while writing ${shard.path} \\(ENOSPC\\)`),
    );
  });
});

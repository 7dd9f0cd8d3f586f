import { mkdir, open, readFile, readlink, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { hubRepositoryFolder } from '@app/config';
import { REQUIRED_FILES } from './checkpoint-file-filter';

const COMMIT_HASH = /^[0-9a-f]{40}$/;
/** A lock file not touched for this long belongs to a process that died. */
const STALE_LOCK_MS = 30_000;
const LOCK_HEARTBEAT_MS = 5_000;
const LOCK_POLL_MS = 250;

/**
 * One model repository in the huggingface_hub cache layout, so a cache filled by Python tools is
 * reused here and the other way round: `blobs/<etag>` holds each file once (etag = the LFS sha256, or
 * the git blob id of a small file), `snapshots/<commit>/<path>` links to it, `refs/<branch>` names
 * the commit a branch or tag pointed at when it was last resolved.
 */
export class HubCacheRepository {
  readonly folder: string;

  constructor(cacheDir: string, modelId: string) {
    this.folder = hubRepositoryFolder(cacheDir, modelId);
  }

  blobPath(etag: string): string {
    return join(this.folder, 'blobs', etag);
  }

  snapshotDir(commit: string): string {
    return join(this.folder, 'snapshots', commit);
  }

  /** The commit a revision names in the cache: a commit hash itself, else what refs/<revision> says. */
  async cachedCommit(revision: string): Promise<string | undefined> {
    if (COMMIT_HASH.test(revision)) return revision;
    try {
      const commit = (await readFile(join(this.folder, 'refs', revision), 'utf8')).trim();
      return COMMIT_HASH.test(commit) ? commit : undefined;
    } catch {
      return undefined;
    }
  }

  async writeRef(revision: string, commit: string): Promise<void> {
    if (revision === commit) return;
    const path = join(this.folder, 'refs', revision);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, commit);
  }

  /** Size of a complete blob, or undefined when it is absent. */
  async blobSize(etag: string): Promise<number | undefined> {
    try {
      return (await stat(this.blobPath(etag))).size;
    } catch {
      return undefined;
    }
  }

  /**
   * Runs `fn` holding `blobs/<etag>.lock`, so processes sharing the cache (replicas on one volume) do
   * not write the same blob at once. The holder touches the file every 5 s; one untouched for 30 s is
   * taken over. `onWait` is called once if another process holds it.
   */
  async withBlobLock<T>(
    etag: string,
    fn: () => Promise<T>,
    signal?: AbortSignal,
    onWait?: (holder: string) => void,
  ): Promise<T> {
    const path = `${this.blobPath(etag)}.lock`;
    await mkdir(dirname(path), { recursive: true });
    let waited = false;
    for (;;) {
      signal?.throwIfAborted();
      try {
        const handle = await open(path, 'wx');
        await handle.writeFile(`${hostname()} ${process.pid}\n`);
        await handle.close();
        break;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      const held = await stat(path).catch(() => undefined);
      if (held && Date.now() - held.mtimeMs > STALE_LOCK_MS) {
        await rm(path, { force: true });
        continue;
      }
      if (held && !waited) {
        waited = true;
        onWait?.((await readFile(path, 'utf8').catch(() => '')).trim() || 'another process');
      }
      await sleep(LOCK_POLL_MS, undefined, { signal }).catch(() => undefined);
    }
    const heartbeat = setInterval(() => {
      const now = new Date();
      utimes(path, now, now).catch(() => undefined);
    }, LOCK_HEARTBEAT_MS);
    try {
      return await fn();
    } finally {
      clearInterval(heartbeat);
      await rm(path, { force: true });
    }
  }

  /** Whether snapshots/<commit>/<path> already links to this blob. */
  async isLinked(commit: string, path: string, etag: string): Promise<boolean> {
    const pointer = join(this.snapshotDir(commit), path);
    try {
      const target = await readlink(pointer);
      return join(dirname(pointer), target) === this.blobPath(etag) && (await stat(pointer)).isFile();
    } catch {
      return false;
    }
  }

  /** snapshots/<commit>/<path> -> ../../blobs/<etag>, relative as huggingface_hub makes it. */
  async link(commit: string, path: string, etag: string): Promise<void> {
    const pointer = join(this.snapshotDir(commit), path);
    await mkdir(dirname(pointer), { recursive: true });
    await rm(pointer, { force: true });
    await symlink(relative(dirname(pointer), this.blobPath(etag)), pointer);
  }

  /**
   * Whether a snapshot holds everything the server loads: config.json, tokenizer.json and every weight
   * file (the index's shards, or model.safetensors).
   */
  async isCompleteSnapshot(commit: string): Promise<boolean> {
    const dir = this.snapshotDir(commit);
    const exists = (name: string) =>
      stat(join(dir, name)).then(
        (info) => info.isFile(),
        () => false,
      );
    for (const name of REQUIRED_FILES) if (!(await exists(name))) return false;
    let shards = ['model.safetensors'];
    try {
      const index = JSON.parse(await readFile(join(dir, 'model.safetensors.index.json'), 'utf8')) as {
        weight_map?: Record<string, string>;
      };
      shards = [...new Set(Object.values(index.weight_map ?? {}))];
    } catch {
      // no index: a single-file checkpoint
    }
    for (const name of shards) if (!(await exists(name))) return false;
    return shards.length > 0;
  }
}

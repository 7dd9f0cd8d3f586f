import { statfs } from 'node:fs/promises';
import { mkdir } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { Injectable } from '@nestjs/common';
import { listFiles, modelInfo } from '@huggingface/hub';
import type { HubModelConfig } from '@app/config';
import { formatBytes } from '@app/checkpoint/quantities';
import { downloadBlob } from './blob-download';
import { isServerFile } from './checkpoint-file-filter';
import { HubCacheRepository } from './hub-cache';
import { HubDownloadError } from './hub-download.error';
import { HubFetchRecorder } from './hub-fetch';

export interface HubDownloadOptions {
  /** Aborts the download (shutdown); the partial file stays for the next start to resume. */
  signal?: AbortSignal;
  log?: (line: string) => void;
  warn?: (line: string) => void;
  /** Bytes of the missing files on disk so far, of their total (called often: keep it cheap). */
  onProgress?: (bytes: number, total: number) => void;
  /** Files downloaded at once (default 4). */
  concurrency?: number;
  /** Least time between two progress lines of one file (default 5 s). */
  progressIntervalMs?: number;
  retries?: number;
  retryDelayMs?: (attempt: number) => number;
  stallTimeoutMs?: number;
}

export interface HubSnapshot {
  /** The snapshot directory, loadable as MODEL_PATH. */
  directory: string;
  commit: string;
  files: number;
  bytes: number;
  /** Bytes fetched by this call (0 when everything was cached). */
  downloadedBytes: number;
}

interface PlannedFile {
  path: string;
  size: number;
  etag: string;
  sha256?: string;
  gitOid?: string;
}

/**
 * Brings a model from the Hugging Face Hub (or HF_ENDPOINT) into the huggingface_hub cache and returns
 * its snapshot directory: only the files the server loads, each resumable and verified (see
 * downloadBlob). HF_HUB_OFFLINE uses the cache alone; an unreachable Hub falls back to a complete
 * cached snapshot of the same revision.
 */
@Injectable()
export class HubModelDownloader {
  async download(config: HubModelConfig, options: HubDownloadOptions = {}): Promise<HubSnapshot> {
    const cache = new HubCacheRepository(config.cacheDir, config.modelId);
    const log = options.log ?? (() => undefined);
    const where = `${config.modelId}@${config.revision}`;
    if (config.offline) {
      const snapshot = await this.cachedSnapshot(cache, config);
      if (!snapshot) {
        throw new HubDownloadError(
          'offline_cache_miss',
          `HF_HUB_OFFLINE is set and ${where} is not in the cache at ${config.cacheDir}: download it first (unset HF_HUB_OFFLINE, or run \`admin model download ${config.modelId}\`) or point HF_HUB_CACHE/HF_HOME at a cache that has it`,
        );
      }
      log(`HF_HUB_OFFLINE: using ${where} from the cache (commit ${snapshot.commit})`);
      return snapshot;
    }

    const context = {
      modelId: config.modelId,
      hubUrl: config.endpoint,
      accessToken: config.token,
      revision: config.revision,
    };
    const recorder = new HubFetchRecorder(options.signal);
    const hub = {
      hubUrl: config.endpoint,
      accessToken: config.token,
      fetch: recorder.fetch,
    };
    let commit: string;
    let plan: PlannedFile[];
    try {
      const info = await modelInfo({
        ...hub,
        name: config.modelId,
        revision: config.revision,
        additionalFields: ['sha'],
      });
      commit = info.sha;
      plan = [];
      for await (const entry of listFiles({
        ...hub,
        repo: { type: 'model', name: config.modelId },
        revision: commit,
        recursive: true,
      })) {
        if (entry.type !== 'file' || !isServerFile(entry.path)) continue;
        // A large file has the Hub's sha256 (lfs.oid); a Xet file listed without it is checked by size
        // only (its git oid is the pointer's, not the content's); a small file by its git blob id.
        const large = entry.lfs !== undefined || entry.xetHash !== undefined;
        plan.push({
          path: entry.path,
          size: entry.lfs?.size ?? entry.size,
          etag: entry.lfs?.oid ?? entry.xetHash ?? entry.oid ?? '',
          sha256: entry.lfs?.oid,
          gitOid: large ? undefined : entry.oid,
        });
      }
    } catch (error) {
      if (options.signal?.aborted) throw new HubDownloadError('aborted', `download of ${where} cancelled`);
      const explained = recorder.explain(context, error);
      if (explained.failure === 'unreachable') {
        const cached = await this.cachedSnapshot(cache, config);
        if (cached) {
          options.warn?.(`${explained.message}; using the cached snapshot ${cached.commit}`);
          return cached;
        }
      }
      throw explained;
    }
    this.checkRepository(config.modelId, plan);
    await cache.writeRef(config.revision, commit);

    const missing: PlannedFile[] = [];
    for (const file of plan) {
      if (await cache.isLinked(commit, file.path, file.etag)) continue;
      if ((await cache.blobSize(file.etag)) === file.size) {
        await cache.link(commit, file.path, file.etag);
        continue;
      }
      missing.push(file);
    }
    const total = plan.reduce((sum, file) => sum + file.size, 0);
    const toFetch = missing.reduce((sum, file) => sum + file.size, 0);
    const directory = cache.snapshotDir(commit);
    if (missing.length === 0) {
      log(
        `${where}: commit ${commit} is in the cache (${plan.length} files, ${formatBytes(total)}) at ${directory}`,
      );
      return { directory, commit, files: plan.length, bytes: total, downloadedBytes: 0 };
    }
    await mkdir(cache.folder, { recursive: true });
    await this.checkFreeSpace(cache.folder, toFetch);
    log(
      `${where}: downloading ${missing.length} of ${plan.length} files (${formatBytes(toFetch)} of ${formatBytes(total)}) of commit ${commit} from ${config.endpoint} into ${config.cacheDir}`,
    );
    const started = performance.now();
    const onDisk = new Map<string, number>();
    let sum = 0;
    const report = (path: string, bytes: number) => {
      sum += bytes - (onDisk.get(path) ?? 0);
      onDisk.set(path, bytes);
      options.onProgress?.(sum, toFetch);
    };
    options.onProgress?.(0, toFetch);
    // Largest first, a few at a time: one stream per file rarely fills the link to the Hub's CDN.
    const queue = [...missing].sort((a, b) => b.size - a.size);
    // The first failure stops the other files too (their partial files stay for the next try).
    const stop = new AbortController();
    const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
    const worker = async (): Promise<void> => {
      for (let file = queue.shift(); file; file = queue.shift()) {
        const current = file;
        await this.fetchFile(config, commit, cache, current, {
          ...options,
          signal,
          onProgress: (bytes) => report(current.path, bytes),
        });
        report(current.path, current.size);
      }
    };
    let failure: unknown;
    const workers = Array.from({ length: Math.min(options.concurrency ?? 4, queue.length) }, () =>
      worker().catch((error: unknown) => {
        failure ??= error;
        queue.length = 0;
        stop.abort();
      }),
    );
    await Promise.all(workers);
    if (failure !== undefined) throw failure;
    const seconds = (performance.now() - started) / 1000;
    log(`${where}: downloaded ${formatBytes(toFetch)} in ${seconds.toFixed(1)} s into ${directory}`);
    return { directory, commit, files: plan.length, bytes: total, downloadedBytes: toFetch };
  }

  private async fetchFile(
    config: HubModelConfig,
    commit: string,
    cache: HubCacheRepository,
    file: PlannedFile,
    options: HubDownloadOptions,
  ): Promise<void> {
    const log = options.log ?? (() => undefined);
    const interval = options.progressIntervalMs ?? 5_000;
    const started = performance.now();
    let lastLog = started;
    let lastBytes = 0;
    log(`downloading ${file.path} (${formatBytes(file.size)})`);
    const result = await cache
      .withBlobLock(
        file.etag,
        async () => {
          // Another process sharing the cache may have completed it while this one waited.
          if ((await cache.blobSize(file.etag)) === file.size) return undefined;
          return downloadBlob({
            modelId: config.modelId,
            path: file.path,
            commit,
            size: file.size,
            sha256: file.sha256,
            gitOid: file.gitOid,
            target: cache.blobPath(file.etag),
            hubUrl: config.endpoint,
            accessToken: config.token,
            signal: options.signal,
            retries: options.retries,
            retryDelayMs: options.retryDelayMs,
            stallTimeoutMs: options.stallTimeoutMs,
            onBytes: (bytes) => {
              options.onProgress?.(bytes, file.size);
              const now = performance.now();
              if (now - lastLog < interval || bytes >= file.size) return;
              const rate = ((bytes - lastBytes) / (now - lastLog)) * 1000;
              log(
                `${file.path}: ${formatBytes(bytes)} of ${formatBytes(file.size)} (${Math.floor((bytes / file.size) * 100)}%), ${formatBytes(rate)}/s`,
              );
              lastLog = now;
              lastBytes = bytes;
            },
            onRetry: (attempt, resumeAt, cause) =>
              (options.warn ?? log)(
                `${file.path}: attempt ${attempt} failed (${cause}); resuming from byte ${resumeAt} of ${file.size}`,
              ),
          });
        },
        options.signal,
        (holder) => log(`${file.path}: waiting for ${holder}, which is downloading it into the same cache`),
      )
      .catch((error: unknown) => {
        if (options.signal?.aborted && !(error instanceof HubDownloadError)) {
          throw new HubDownloadError('aborted', `${config.modelId}: download of ${file.path} cancelled`);
        }
        throw error;
      });
    if (!result) {
      await cache.link(commit, file.path, file.etag);
      log(`${file.path}: completed by another process`);
      return;
    }
    await cache.link(commit, file.path, file.etag);
    const seconds = (performance.now() - started) / 1000;
    log(
      `${file.path}: done, ${file.sha256 ? 'sha256' : file.gitOid ? 'git blob id' : 'size'} verified (${formatBytes(file.size)} in ${seconds.toFixed(1)} s${result.resumedFrom.length > 0 ? `, resumed ${result.resumedFrom.length}x` : ''})`,
    );
  }

  private checkRepository(modelId: string, plan: PlannedFile[]): void {
    const paths = new Set(plan.map((file) => file.path));
    const missing = ['config.json', 'tokenizer.json'].filter((name) => !paths.has(name));
    if (![...paths].some((path) => path.endsWith('.safetensors'))) missing.push('*.safetensors weights');
    if (missing.length > 0) {
      throw new HubDownloadError(
        'incomplete_repository',
        `${modelId} has no ${missing.join(', ')}: the server loads Hugging Face safetensors checkpoints with a tokenizer.json`,
      );
    }
  }

  private async checkFreeSpace(folder: string, bytes: number): Promise<void> {
    const fs = await statfs(folder);
    const free = fs.bavail * fs.bsize;
    if (free < bytes) {
      throw new HubDownloadError(
        'disk_full',
        `not enough space for the download in ${folder}: ${formatBytes(bytes)} needed, ${formatBytes(free)} free; free space or point HF_HUB_CACHE at a larger volume`,
      );
    }
  }

  private async cachedSnapshot(
    cache: HubCacheRepository,
    config: HubModelConfig,
  ): Promise<HubSnapshot | undefined> {
    const commit = await cache.cachedCommit(config.revision);
    if (!commit || !(await cache.isCompleteSnapshot(commit))) return undefined;
    return { directory: cache.snapshotDir(commit), commit, files: 0, bytes: 0, downloadedBytes: 0 };
  }
}

import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { setTimeout as sleep } from 'node:timers/promises';
import { downloadFile, fileDownloadInfo } from '@huggingface/hub';
import { HubDownloadError } from './hub-download.error';
import { HubFetchRecorder } from './hub-fetch';

export interface BlobDownloadRequest {
  modelId: string;
  /** The file's path in the repository. */
  path: string;
  commit: string;
  size: number;
  /** LFS files: the Hub's sha256 of the content. */
  sha256?: string;
  /** Small (non-LFS) files: the git blob id, sha1("blob <size>\0" + content). */
  gitOid?: string;
  /** Where the verified file ends up; bytes go to `<target>.incomplete` until then. */
  target: string;
  hubUrl: string;
  accessToken?: string;
  signal?: AbortSignal;
  /** Bytes of this file on disk so far (called for every chunk: throttle in the callee). */
  onBytes?: (bytes: number) => void;
  onRetry?: (attempt: number, resumeAt: number, cause: string) => void;
  /** Failed attempts in a row before giving up; an attempt that moved bytes resets the count. */
  retries?: number;
  retryDelayMs?: (attempt: number) => number;
  /** An attempt that receives nothing for this long is cut and retried. */
  stallTimeoutMs?: number;
}

export interface BlobDownloadResult {
  attempts: number;
  /** Byte offsets from which an attempt resumed (Range requests). */
  resumedFrom: number[];
}

const DEFAULT_RETRIES = 5;
const DEFAULT_STALL_MS = 60_000;
const defaultDelay = (attempt: number) => Math.min(1_000 * 2 ** (attempt - 1), 30_000);

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch {
    return undefined;
  }
}

/** A download attempt that may succeed if tried again (connection cut, stall, 5xx, 429). */
class RetryableError extends Error {}

/**
 * Downloads one repository file through @huggingface/hub and leaves it at `target` only once complete
 * and verified. The library resolves the URL (following the Hub's redirect to its CDN) and fetches
 * byte ranges (`WebBlob.slice`), but writes, resumes and checks nothing itself; this adds those:
 * bytes go to `<target>.incomplete`, a cut connection resumes with a Range request from the bytes on
 * disk, and the whole file is checked against the Hub's size and sha256 before the rename.
 */
export async function downloadBlob(request: BlobDownloadRequest): Promise<BlobDownloadResult> {
  const incomplete = `${request.target}.incomplete`;
  await mkdir(dirname(request.target), { recursive: true });
  const retries = request.retries ?? DEFAULT_RETRIES;
  const resumedFrom: number[] = [];
  let failuresInARow = 0;
  let attempts = 0;
  for (;;) {
    let have = (await sizeOf(incomplete)) ?? 0;
    if (have > request.size) {
      // Longer than the file can be: not a prefix of it.
      await truncate(incomplete, 0);
      have = 0;
    }
    if (have < request.size || (await sizeOf(incomplete)) === undefined) {
      attempts += 1;
      if (have > 0) resumedFrom.push(have);
      try {
        await transfer(request, incomplete, have);
        failuresInARow = 0;
      } catch (error) {
        if (!(error instanceof RetryableError)) throw error;
        const now = (await sizeOf(incomplete)) ?? 0;
        failuresInARow = now > have ? 1 : failuresInARow + 1;
        if (failuresInARow > retries) {
          throw new HubDownloadError(
            'unreachable',
            `${request.modelId}: ${request.path} failed ${failuresInARow} times in a row (${error.message}); ${now} of ${request.size} bytes kept in ${incomplete} for the next try`,
          );
        }
        request.onRetry?.(attempts, now, error.message);
        await sleep((request.retryDelayMs ?? defaultDelay)(failuresInARow), undefined, {
          signal: request.signal,
        }).catch(() => undefined);
        throwIfAborted(request);
        continue;
      }
    }
    await verify(request, incomplete);
    await rename(incomplete, request.target);
    return { attempts, resumedFrom };
  }
}

function throwIfAborted(request: BlobDownloadRequest): void {
  if (request.signal?.aborted) {
    throw new HubDownloadError('aborted', `${request.modelId}: download of ${request.path} cancelled`);
  }
}

async function transfer(request: BlobDownloadRequest, incomplete: string, offset: number): Promise<void> {
  throwIfAborted(request);
  if (request.size === 0) {
    await writeFile(incomplete, '');
    return;
  }
  const attempt = new AbortController();
  const signal = request.signal ? AbortSignal.any([request.signal, attempt.signal]) : attempt.signal;
  const recorder = new HubFetchRecorder(signal);
  let stall: NodeJS.Timeout | undefined;
  const stallMs = request.stallTimeoutMs ?? DEFAULT_STALL_MS;
  const armStall = () => {
    clearTimeout(stall);
    stall = setTimeout(() => attempt.abort(new Error(`no data for ${stallMs / 1000} s`)), stallMs);
  };
  let written = offset;
  try {
    armStall();
    const common = {
      repo: { type: 'model' as const, name: request.modelId },
      path: request.path,
      revision: request.commit,
      hubUrl: request.hubUrl,
      accessToken: request.accessToken,
      fetch: recorder.fetch,
    };
    // Resolved again on every attempt: the CDN URL it redirects to is signed and may have expired.
    const downloadInfo = await fileDownloadInfo(common);
    if (!downloadInfo) {
      throw new HubDownloadError(
        'not_found',
        `${request.modelId}: ${request.path} is not in commit ${request.commit}`,
      );
    }
    if (downloadInfo.size !== request.size) {
      throw new HubDownloadError(
        'integrity',
        `${request.modelId}: ${request.path} is ${downloadInfo.size} bytes on the server but ${request.size} in the file listing`,
      );
    }
    // xet: false keeps it one plain HTTP stream that a Range request can resume.
    const blob = await downloadFile({ ...common, xet: false, downloadInfo });
    if (!blob) throw new HubDownloadError('not_found', `${request.modelId}: ${request.path} disappeared`);
    const body = Readable.fromWeb((offset > 0 ? blob.slice(offset) : blob).stream() as WebReadableStream);
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        written += chunk.length;
        armStall();
        request.onBytes?.(written);
        callback(null, chunk);
      },
    });
    await pipeline(body, counter, createWriteStream(incomplete, { flags: offset > 0 ? 'a' : 'w' }), {
      signal,
    });
  } catch (error) {
    throw classify(error, request, recorder);
  } finally {
    clearTimeout(stall);
  }
  if (recorder.rangeIgnored) {
    // The server sent the whole file to a Range request: what was appended is not a continuation.
    await truncate(incomplete, 0);
    throw new RetryableError('the server ignored the Range request');
  }
  if (written < request.size) {
    throw new RetryableError(`the connection closed after ${written} of ${request.size} bytes`);
  }
}

function classify(error: unknown, request: BlobDownloadRequest, recorder: HubFetchRecorder): Error {
  if (error instanceof HubDownloadError) return error;
  if (request.signal?.aborted) {
    return new HubDownloadError('aborted', `${request.modelId}: download of ${request.path} cancelled`);
  }
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new HubDownloadError(
      'disk_full',
      `no space left on the device holding ${request.target} while writing ${request.path} (${code}); free space or point HF_HUB_CACHE at a larger volume`,
    );
  }
  if (code && (error as NodeJS.ErrnoException).syscall) {
    return new HubDownloadError(
      'cache_unwritable',
      `cannot write ${request.path} into ${dirname(request.target)} (${code}); check HF_HUB_CACHE/HF_HOME and its permissions`,
    );
  }
  const status = recorder.lastFailure?.status;
  // A CDN's 4xx (an expired signed URL) is retried: the next attempt resolves a fresh URL.
  const fromHub = recorder.lastFailure?.url?.startsWith(request.hubUrl) ?? true;
  if (status !== undefined && status < 500 && status !== 408 && status !== 429 && fromHub) {
    return recorder.explain(request, error);
  }
  // The library reports a failed stream as a bare string.
  const message =
    error instanceof Error
      ? error.cause instanceof Error
        ? `${error.message}: ${error.cause.message}`
        : error.message
      : String(error);
  return new RetryableError(status !== undefined ? `HTTP ${status}` : message);
}

/** Checks size, then the Hub's sha256 (LFS) or git blob id (small files); removes a bad file. */
async function verify(request: BlobDownloadRequest, incomplete: string): Promise<void> {
  const size = await sizeOf(incomplete);
  let problem: string | undefined;
  if (size !== request.size) {
    problem = `${size} bytes where the Hub lists ${request.size}`;
  } else if (request.sha256) {
    const actual = await digest(incomplete, createHash('sha256'));
    if (actual !== request.sha256) problem = `sha256 ${actual} where the Hub lists ${request.sha256}`;
  } else if (request.gitOid) {
    const hash = createHash('sha1').update(`blob ${request.size}\0`);
    const actual = await digest(incomplete, hash);
    if (actual !== request.gitOid) problem = `git blob id ${actual} where the Hub lists ${request.gitOid}`;
  }
  if (problem) {
    await rm(incomplete, { force: true });
    throw new HubDownloadError(
      'integrity',
      `${request.modelId}: ${request.path} failed verification (${problem}); the download was discarded`,
    );
  }
}

async function digest(path: string, hash: ReturnType<typeof createHash>): Promise<string> {
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * 1024 * 1024 })) {
    hash.update(chunk as Buffer);
  }
  return hash.digest('hex');
}

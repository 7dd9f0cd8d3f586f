export type HubDownloadFailure =
  | 'not_found'
  | 'revision_not_found'
  | 'unauthorized'
  | 'forbidden'
  | 'gated'
  | 'offline_cache_miss'
  | 'disk_full'
  | 'cache_unwritable'
  | 'integrity'
  | 'unreachable'
  | 'incomplete_repository'
  | 'aborted'
  | 'http';

/** A model download that failed, with a message that names the cause and what to do about it. */
export class HubDownloadError extends Error {
  constructor(
    readonly failure: HubDownloadFailure,
    message: string,
  ) {
    super(message);
    this.name = 'HubDownloadError';
  }
}

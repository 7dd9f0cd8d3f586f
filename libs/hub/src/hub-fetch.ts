import { HubApiError } from '@huggingface/hub';
import { HubDownloadError } from './hub-download.error';

export interface HubFailure {
  status: number;
  /** The URL that failed: the Hub itself, or the CDN it redirected to. */
  url?: string;
  /** The Hub's X-Error-Code: RepositoryNotFound, RevisionNotFound, EntryNotFound, GatedRepo, ... */
  errorCode?: string;
}

export interface HubRequestContext {
  modelId: string;
  hubUrl: string;
  accessToken?: string;
  revision?: string;
  path?: string;
}

/**
 * The fetch handed to @huggingface/hub: adds our abort signal and remembers what the library's
 * errors leave out (the Hub's X-Error-Code header; a Range request answered with the whole file).
 */
export class HubFetchRecorder {
  lastFailure?: HubFailure;
  rangeIgnored = false;

  constructor(private readonly signal?: AbortSignal) {}

  readonly fetch: typeof fetch = async (input, init) => {
    const response = await fetch(input, { ...init, signal: this.signal });
    if (!response.ok) {
      this.lastFailure = {
        status: response.status,
        url: response.url,
        errorCode: response.headers.get('x-error-code') ?? undefined,
      };
    }
    const range = new Headers(init?.headers).get('range');
    if (range && !range.startsWith('bytes=0-') && response.status === 200) this.rangeIgnored = true;
    return response;
  };

  /** A Hub error as a message that names the cause and the remedy. */
  explain(context: HubRequestContext, error: unknown): HubDownloadError {
    const status = error instanceof HubApiError ? error.statusCode : this.lastFailure?.status;
    if (status === undefined) {
      const cause = (error as Error).cause as NodeJS.ErrnoException | undefined;
      return new HubDownloadError(
        'unreachable',
        `cannot reach ${context.hubUrl} for ${context.modelId} (${cause?.code ?? cause?.message ?? (error as Error).message}); check the network or HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to load from the cache`,
      );
    }
    return explainHubFailure({ status, errorCode: this.lastFailure?.errorCode }, context);
  }
}

export function explainHubFailure(failure: HubFailure, context: HubRequestContext): HubDownloadError {
  const { modelId, hubUrl } = context;
  const { status, errorCode } = failure;
  const token = context.accessToken !== undefined;
  const at = `${hubUrl}/${modelId}`;
  if (errorCode === 'GatedRepo') {
    return new HubDownloadError(
      'gated',
      token
        ? `${modelId} is a gated model and HF_TOKEN's account has no access yet (HTTP ${status}): accept its conditions at ${at}`
        : `${modelId} is a gated model (HTTP ${status}): accept its conditions at ${at} and set HF_TOKEN to a token of that account`,
    );
  }
  if (errorCode === 'RevisionNotFound') {
    return new HubDownloadError(
      'revision_not_found',
      `${modelId} has no revision ${context.revision ?? 'main'} (HTTP ${status}): check MODEL_REVISION`,
    );
  }
  if (errorCode === 'EntryNotFound') {
    return new HubDownloadError('not_found', `${modelId} has no file ${context.path ?? ''} (HTTP ${status})`);
  }
  if (errorCode === 'RepositoryNotFound' || status === 404) {
    return new HubDownloadError(
      'not_found',
      `model ${modelId} not found on ${hubUrl} (HTTP ${status}): check MODEL_ID${token ? '' : '; a private repository also needs HF_TOKEN'}`,
    );
  }
  if (status === 401) {
    return new HubDownloadError(
      'unauthorized',
      token
        ? `${hubUrl} rejected HF_TOKEN (HTTP 401): the token is invalid or expired`
        : `${hubUrl} requires a token for ${modelId} (HTTP 401): it is private or gated; set HF_TOKEN`,
    );
  }
  if (status === 403) {
    return new HubDownloadError('forbidden', `HF_TOKEN has no access to ${modelId} (HTTP 403)`);
  }
  return new HubDownloadError('http', `${hubUrl} answered HTTP ${status} for ${modelId}`);
}

import type { IncomingMessage, ServerResponse } from 'node:http';
import { Params } from 'nestjs-pino';
import { destination } from 'pino';
import { REQUEST_ID_HEADER, resolveRequestId } from './request-id';

const QUIET_PATHS = ['/health', '/metrics'];

function pathOf(url: string | undefined): string {
  // Query strings never reach the logs: a key passed as ?access_token= must not be written anywhere.
  return (url ?? '').split('?')[0];
}

/** Where the global filter leaves the OpenAI error code of a failed request, for the request line. */
export interface ResponseLocals {
  errorCode?: string;
}

type LoggedRequest = IncomingMessage & { originalUrl?: string; ip?: string };
type LoggedResponse = ServerResponse & { err?: Error; locals?: ResponseLocals };

/** Per-request figures of an embeddings answer, as its headers carry them, and the error code. */
function outcomeOf(res: LoggedResponse): Record<string, number | string> {
  const fields: Record<string, number | string> = {};
  const tokens = res.getHeader('x-total-tokens');
  if (tokens !== undefined) {
    fields.tokens = Number(tokens);
    fields.tokenizationMs = Number(res.getHeader('x-tokenization-time-ms'));
    fields.queueMs = Number(res.getHeader('x-queue-time-ms'));
    fields.inferenceMs = Number(res.getHeader('x-inference-time-ms'));
  }
  const code = res.locals?.errorCode;
  if (code) fields.errorCode = code;
  return fields;
}

/**
 * Structured JSON request logs with request ids (the client's x-request-id when sane, echoed back),
 * written by nestjs-pino's middleware (pino-http) on every route: 'request completed', 'request
 * aborted' when the client left first, 'request errored' with an error for a 5xx. Only method, path,
 * client address (Nginx's X-Forwarded-For through Express's trust proxy), status, tokens, timings and
 * the error code are logged: never headers (keys) nor bodies (input text). App logs written during a
 * request (the filter's 500) carry the request, through nestjs-pino's AsyncLocalStorage.
 */
export function createLoggerParams(level: string): Params {
  return {
    pinoHttp: [
      {
        level,
        genReqId: (req: IncomingMessage, res: ServerResponse) => {
          const id = resolveRequestId(req.headers[REQUEST_ID_HEADER]);
          res.setHeader(REQUEST_ID_HEADER, id);
          return id;
        },
        // pino-http hands its serializers the request and response as pino-std-serializers maps
        // them, the objects themselves under `raw`.
        serializers: {
          req: (req: {
            id: string;
            method: string;
            url: string;
            remoteAddress?: string;
            raw: LoggedRequest;
          }) => ({
            id: req.id,
            method: req.method,
            path: pathOf(req.url),
            remoteAddress: req.raw.ip ?? req.remoteAddress,
          }),
          res: (res: { statusCode: number | null; raw: LoggedResponse }) => ({
            statusCode: res.statusCode,
            ...outcomeOf(res.raw),
          }),
        },
        redact: { paths: ['req.headers', 'res.headers', 'authorization'], remove: true },
        autoLogging: {
          ignore: (req: IncomingMessage) => QUIET_PATHS.some((prefix) => pathOf(req.url).startsWith(prefix)),
        },
        customLogLevel: (_req: IncomingMessage, res: ServerResponse, error?: Error) =>
          error || res.statusCode >= 500 ? 'error' : res.statusCode >= 400 ? 'warn' : 'info',
      },
      // Synchronous: the last lines before an exit (shutdown, failed load) must not be lost.
      destination({ dest: 1, sync: true }),
    ],
  };
}

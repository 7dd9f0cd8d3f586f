import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Logger } from '@nestjs/common';

/** What the shutdown drives; the Nest app, its HTTP server and two providers in production. */
export interface ShutdownParts {
  /** The HTTP server the app listens with. */
  server: Server;
  /** Readiness turns 503 (`stopping`) for good. */
  markStopping(): void;
  /** Stops admitting work and waits up to `timeoutMs` for admitted work; fails the rest with 503. */
  drain(timeoutMs: number): Promise<void>;
  /** Nest's `app.close()`: lifecycle hooks, engine disposal (which also cancels a load in progress). */
  close(): Promise<void>;
}

export interface GracefulShutdownOptions {
  /** SHUTDOWN_TIMEOUT_MS: how long admitted work may take after the signal. */
  timeoutMs: number;
  /** Past `timeoutMs`, how long answers already written may take to reach slow clients. */
  flushGraceMs?: number;
  /** Past `timeoutMs`, when the process is killed whatever still runs (native disposal included). */
  hardDeadlineGraceMs?: number;
  /** process.exit, replaced in unit tests. */
  exit?: (code: number) => void;
  /** Ends the process at once, without exit handlers; replaced in unit tests. */
  kill?: () => void;
}

export const DEFAULT_FLUSH_GRACE_MS = 1_000;
export const DEFAULT_HARD_DEADLINE_GRACE_MS = 5_000;
const FLUSH_POLL_MS = 20;
/** How long idle keep-alive connections stay open after the signal (see shutdown()). */
const IDLE_LINGER_MS = 1_000;

/**
 * SIGTERM/SIGINT handling with a bounded end, replacing Nest's shutdown hooks (which drain before the
 * HTTP server stops listening, leave Node's header and request timeouts unchecked once it closes,
 * and wait for every client to leave). On the first signal, at once: readiness turns 503, the server
 * stops listening (new connections are refused), idle keep-alive connections are closed a second later, and every
 * answer from then on carries `Connection: close`. Admitted work runs for up to `timeoutMs`; what is
 * left gets the 503 `shutting_down` envelope. Answers being written get `flushGraceMs` more, then
 * every connection still open (half-sent headers or bodies, slow readers) is destroyed, the app is
 * closed (engine disposed) and the process exits 0. If anything hangs, a timer kills the process
 * at `timeoutMs + hardDeadlineGraceMs`; a second signal kills it at once. Forced ends are SIGKILL,
 * not process.exit: exit handlers can hang while an engine thread is still inside a forward batch
 * (OpenBLAS's exit handler joins its workers; seen to wait forever).
 */
export class GracefulShutdown {
  private readonly logger = new Logger('Shutdown');
  /** Answers not yet finished, so the ones in progress at the signal can be told `Connection: close`. */
  private readonly responses = new Set<ServerResponse>();
  private startedAt?: number;
  private readonly flushGraceMs: number;
  private readonly hardDeadlineGraceMs: number;
  private readonly exit: (code: number) => void;
  private readonly kill: () => void;

  constructor(
    private readonly parts: ShutdownParts,
    private readonly options: GracefulShutdownOptions,
  ) {
    this.flushGraceMs = options.flushGraceMs ?? DEFAULT_FLUSH_GRACE_MS;
    this.hardDeadlineGraceMs = options.hardDeadlineGraceMs ?? DEFAULT_HARD_DEADLINE_GRACE_MS;
    this.exit = options.exit ?? ((code) => process.exit(code));
    this.kill = options.kill ?? (() => process.kill(process.pid, 'SIGKILL'));
  }

  /** True once a signal (or `shutdown()`) started the sequence. */
  get started(): boolean {
    return this.startedAt !== undefined;
  }

  /** Tracks answers (before Express sees the request) and handles the signals. */
  install(signals: NodeJS.Signals[] = ['SIGTERM', 'SIGINT']): this {
    this.parts.server.prependListener('request', this.onRequest);
    for (const signal of signals) process.on(signal, this.onSignal);
    return this;
  }

  private readonly onRequest = (_req: IncomingMessage, res: ServerResponse): void => {
    if (this.startedAt !== undefined) closeAfter(res);
    this.responses.add(res);
    res.once('close', () => this.responses.delete(res));
  };

  private readonly onSignal = (signal: NodeJS.Signals): void => {
    if (this.startedAt !== undefined) {
      this.logger.warn(`${signal} again while shutting down: killing the process`);
      this.kill();
      return;
    }
    void this.shutdown(signal);
  };

  /** The whole sequence; ends in `exit(0)` when every step finished in time, else in `kill`. */
  async shutdown(reason: string): Promise<void> {
    if (this.startedAt !== undefined) return;
    const startedAt = performance.now();
    this.startedAt = startedAt;
    const { timeoutMs } = this.options;
    const { server } = this.parts;
    // Unref'd: it must not keep alive a process that has nothing else left to do.
    const hardDeadline = setTimeout(() => {
      this.logger.error(
        `shutdown still running ${timeoutMs + this.hardDeadlineGraceMs} ms after ${reason}: killing the process`,
      );
      this.kill();
    }, timeoutMs + this.hardDeadlineGraceMs).unref();

    this.parts.markStopping();
    // One more poll phase first: it accepts the connections waiting in the listen backlog, which
    // closing the listener would reset (their clients sent a request and get ECONNRESET).
    await new Promise((resolve) => setImmediate(() => setImmediate(resolve)));
    // Stops listening. http.Server.close would also close the idle keep-alive connections at once,
    // and a busy client sends its next request on its connection within microseconds of an answer:
    // closed under it, that request is lost (a reset, not an answer). So the listener is closed
    // alone; a request on an open connection is answered (503 once draining) with
    // `Connection: close`, which ends that connection, and what is still idle a moment later is closed.
    net.Server.prototype.close.call(server);
    setTimeout(() => server.closeIdleConnections(), Math.min(IDLE_LINGER_MS, timeoutMs)).unref();
    for (const res of this.responses) closeAfter(res);
    this.logger.log(
      `${reason}: not accepting connections; admitted work has ${timeoutMs} ms, exit by ${timeoutMs + this.hardDeadlineGraceMs} ms`,
    );

    try {
      await this.parts.drain(timeoutMs);
      await this.flush(startedAt + timeoutMs + this.flushGraceMs);
      // Half-sent headers or bodies and slow readers: server.close() would wait for them forever
      // (it also stops Node's header and request timeouts).
      server.closeAllConnections();
      await this.parts.close();
    } catch (error) {
      this.logger.error({ err: error }, `shutdown failed: ${(error as Error).message}`);
      this.kill(); // the engine may still run: exit handlers could hang
      return;
    }
    clearTimeout(hardDeadline);
    this.logger.log(`shut down in ${Math.round(performance.now() - startedAt)} ms`);
    this.exit(0);
  }

  /** Waits until every fully received request has its answer written, or until `deadline`. */
  private async flush(deadline: number): Promise<void> {
    const unanswered = () => [...this.responses].some((res) => res.req.complete && !res.writableFinished);
    while (unanswered() && performance.now() < deadline) {
      await sleep(FLUSH_POLL_MS);
    }
  }
}

/** The answer ends its connection, so a keep-alive client does not send on it again. */
function closeAfter(res: ServerResponse): void {
  if (!res.headersSent) res.setHeader('Connection', 'close');
}

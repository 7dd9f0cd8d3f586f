import { performance } from 'node:perf_hooks';

/**
 * Keeps the event loop turning (one setImmediate after another) while at least one hold is open,
 * and for `lingerMs` after the last one closed, so the JS thread does not sleep between a request's
 * steps (waiting for the tokenizer's thread, then for the engine's forward), nor between the
 * requests of a steady client. Measured (docs/benchmarks.md, "Busy polling"): after such a sleep the
 * rest of a request's JavaScript runs measurably slower, and a short query's time outside the engine
 * grows. Costs a CPU core while requests are in the service (and for lingerMs after); does nothing
 * when off.
 */
export class BusyPoll {
  private holds = 0;
  private spinning = false;
  private lastRelease = 0;

  constructor(
    readonly enabled: boolean,
    readonly lingerMs = 0,
  ) {}

  /** Opens a hold; call release() once when the work is done. */
  hold(): { release(): void } {
    if (!this.enabled) return { release: () => undefined };
    this.holds += 1;
    if (!this.spinning) {
      this.spinning = true;
      setImmediate(this.turn);
    }
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.holds -= 1;
        this.lastRelease = performance.now();
      },
    };
  }

  /** Open holds (for tests and metrics). */
  get active(): number {
    return this.holds;
  }

  private readonly turn = (): void => {
    if (this.holds > 0 || performance.now() - this.lastRelease < this.lingerMs) {
      setImmediate(this.turn);
    } else {
      this.spinning = false;
    }
  };
}

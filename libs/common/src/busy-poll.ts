/**
 * Keeps the event loop turning (one setImmediate after another) while at least one hold is open, so
 * the JS thread does not sleep between a request's steps (waiting for the tokenizer's thread, then
 * for the engine's forward). Measured (docs/service.md, "Busy polling"): after such a sleep the
 * rest of a request's JavaScript runs measurably slower, and a short query's time outside the engine
 * grows. Costs a CPU core while requests are in the service; does nothing when off.
 */
export class BusyPoll {
  private holds = 0;
  private spinning = false;

  constructor(readonly enabled: boolean) {}

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
      },
    };
  }

  /** Open holds (for tests and metrics). */
  get active(): number {
    return this.holds;
  }

  private readonly turn = (): void => {
    if (this.holds > 0) {
      setImmediate(this.turn);
    } else {
      this.spinning = false;
    }
  };
}

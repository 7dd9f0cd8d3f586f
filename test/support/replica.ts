import { ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { freePort } from './free-port';
import { assertPrerequisites, DEMO_MODEL, TEST_SERVER_ENV } from './test-app';
import { CHILD_PATH } from './test-env';

const MAIN = resolve(__dirname, '../../dist/apps/api/src/main.js');

/** One service replica: `node dist/apps/api/src/main.js` as its own process, as a container runs it. */
export class Replica {
  private child?: ChildProcess;
  private exited?: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private stderr = '';

  private boundPort?: number;

  constructor(private readonly env: Record<string, string> = {}) {}

  /** The loopback port, chosen at the first start and kept by restarts (as a pod's address is). */
  get port(): number {
    if (this.boundPort === undefined) throw new Error('replica never started');
    return this.boundPort;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /**
   * Starts the process; resolves once /health/ready answers 200. The first start picks a free port and
   * picks again if another process takes it first.
   */
  async start(timeoutMs = 90_000): Promise<void> {
    if (this.boundPort !== undefined) return this.spawnReady(timeoutMs);
    for (let attempt = 1; ; attempt++) {
      this.boundPort = await freePort();
      try {
        return await this.spawnReady(timeoutMs);
      } catch (error) {
        if (attempt === 3 || !/EADDRINUSE/.test((error as Error).message)) throw error;
      }
    }
  }

  private async spawnReady(timeoutMs: number): Promise<void> {
    assertPrerequisites();
    if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` (make build)`);
    this.stderr = '';
    const child = spawn(process.execPath, [MAIN], {
      cwd: resolve(__dirname, '../..'),
      stdio: ['ignore', 'ignore', 'pipe'],
      env: {
        PATH: CHILD_PATH,
        ...TEST_SERVER_ENV,
        MODEL_PATH: DEMO_MODEL,
        PORT: String(this.port),
        LOG_LEVEL: 'warn',
        OMP_NUM_THREADS: '1',
        ...this.env,
      },
    });
    child.stderr?.on(
      'data',
      (chunk: Buffer) => (this.stderr = (this.stderr + chunk.toString()).slice(-4000)),
    );
    this.child = child;
    this.exited = new Promise((resolveExit) =>
      child.once('exit', (code, signal) => resolveExit({ code, signal })),
    );
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`replica on ${this.port} exited during startup: ${this.stderr}`);
      }
      const ready = await fetch(`${this.url}/health/ready`).then(
        (res) => res.status === 200,
        () => false,
      );
      if (ready) return;
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`replica on ${this.port} not ready after ${timeoutMs} ms: ${this.stderr}`);
      }
      await new Promise((wait) => setTimeout(wait, 200));
    }
  }

  /** Sends `signal`; resolves with how the process ended. */
  async stop(signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (!this.child || !this.exited) throw new Error(`replica on ${this.port} was never started`);
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }

  get running(): boolean {
    return Boolean(this.child && this.child.exitCode === null && this.child.signalCode === null);
  }

  get log(): string {
    return this.stderr;
  }

  async metrics(): Promise<string> {
    const res = await fetch(`${this.url}/metrics`);
    if (res.status !== 200) throw new Error(`GET ${this.url}/metrics: ${res.status}`);
    return res.text();
  }
}

import { createServer, get, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Logger } from '@nestjs/common';
import { GracefulShutdown, ShutdownParts } from './graceful-shutdown';

/** The orchestration on a real loopback server with fake parts; the e2e test runs the real process. */
describe(GracefulShutdown.name, () => {
  let server: Server;
  let port: number;
  let steps: string[];
  let exit: jest.Mock;
  let kill: jest.Mock;
  let release: () => void;

  function parts(overrides: Partial<ShutdownParts> = {}): ShutdownParts {
    return {
      server,
      markStopping: () => steps.push('markStopping'),
      drain: async (timeoutMs) => {
        steps.push(`drain ${timeoutMs} listening=${server.listening}`);
        await sleep(30);
      },
      close: async () => {
        steps.push('close');
      },
      ...overrides,
    };
  }

  beforeAll(() => Logger.overrideLogger(false));

  beforeEach(async () => {
    steps = [];
    exit = jest.fn();
    kill = jest.fn();
    const held = new Promise<void>((resolve) => (release = resolve));
    server = createServer((req, res) => {
      if (req.url === '/slow') void held.then(() => res.end('done'));
      else res.end('ok');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterEach(() => {
    release();
    server.closeAllConnections();
    server.close();
    process.removeAllListeners('SIGUSR2');
  });

  it('marks stopping, stops listening, drains, closes the app, then exits 0', async () => {
    const sut = new GracefulShutdown(parts(), { timeoutMs: 1234, exit, kill });

    await sut.shutdown('test');

    expect(steps).toEqual(['markStopping', 'drain 1234 listening=false', 'close']);
    expect(exit).toHaveBeenCalledWith(0);
    expect(kill).not.toHaveBeenCalled();
  });

  it('tells a response in progress at the signal to close its connection', async () => {
    const sut = new GracefulShutdown(parts(), { timeoutMs: 1000, exit, kill }).install(['SIGUSR2']);
    const answer = new Promise<string | undefined>((resolve) =>
      get({ port, path: '/slow', agent: false }, (res) => {
        res.resume();
        resolve(res.headers.connection);
      }),
    );
    await sleep(50); // the request is in the handler
    const shutdown = sut.shutdown('test');
    release();

    expect(await answer).toBe('close');
    await shutdown;
  });

  it('kills the process when the graceful path hangs past timeout + grace', async () => {
    const sut = new GracefulShutdown(parts({ close: () => new Promise<void>(() => undefined) }), {
      timeoutMs: 20,
      hardDeadlineGraceMs: 50,
      flushGraceMs: 0,
      exit,
      kill,
    });

    void sut.shutdown('test');
    await sleep(40);
    expect(kill).not.toHaveBeenCalled();
    await sleep(100);

    expect(kill).toHaveBeenCalledTimes(1);
    expect(exit).not.toHaveBeenCalled();
  });

  it('kills the process at a second signal', async () => {
    const sut = new GracefulShutdown(parts({ drain: () => new Promise<void>(() => undefined) }), {
      timeoutMs: 60_000,
      exit,
      kill,
    }).install(['SIGUSR2']);

    process.emit('SIGUSR2', 'SIGUSR2');
    expect(sut.started).toBe(true);
    expect(kill).not.toHaveBeenCalled();
    process.emit('SIGUSR2', 'SIGUSR2');

    expect(kill).toHaveBeenCalledTimes(1);
  });
});

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { freePort } from './free-port';

const execFileAsync = promisify(execFile);

/** crun fails on these machines' cgroup setup; runc works (docs: README "Deploy"). */
const PODMAN_GLOBAL = ['--runtime', 'runc'];
export const CONTAINER_LIMITS = ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=4096:4096'];

/** Runs `podman <args>`; rejects with podman's stderr on a non-zero exit. */
export async function podman(args: string[], timeoutMs = 120_000): Promise<string> {
  try {
    const { stdout } = await execFileAsync('podman', [...PODMAN_GLOBAL, ...args], {
      timeout: timeoutMs,
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout.trim();
  } catch (error) {
    const { stderr, code } = error as { stderr?: string; code?: number | string };
    throw new Error(`podman ${args.join(' ')} failed (${code}): ${stderr?.trim() ?? ''}`);
  }
}

/** Like podman(), but resolves with the exit code instead of rejecting on a non-zero one. */
export async function podmanStatus(
  args: string[],
  timeoutMs = 120_000,
): Promise<{ code: number; stdout: string }> {
  try {
    const { stdout } = await execFileAsync('podman', [...PODMAN_GLOBAL, ...args], { timeout: timeoutMs });
    return { code: 0, stdout: stdout.trim() };
  } catch (error) {
    const { code, stdout } = error as { code?: number | string; stdout?: string };
    if (typeof code !== 'number') throw error;
    return { code, stdout: stdout?.trim() ?? '' };
  }
}

export interface ContainerOptions {
  env?: Record<string, string>;
  /** `host:container[:options]` bind mounts. */
  volumes?: string[];
}

export interface RunningContainer {
  name: string;
  /** The published port on the loopback interface. */
  url: string;
  logs(): Promise<string>;
  /** podman stop with this grace period; resolves with how long it took and the exit code. */
  stop(graceSeconds: number): Promise<{ seconds: number; exitCode: number }>;
  remove(): Promise<void>;
}

/** `podman run -d` of the image with the limits these machines need, port 6008 on 127.0.0.1. */
export async function startContainer(
  image: string,
  name: string,
  options: ContainerOptions = {},
): Promise<RunningContainer> {
  const port = await freePort();
  const args = ['run', '-d', '--name', name, ...CONTAINER_LIMITS, '-p', `127.0.0.1:${port}:6008`];
  for (const [key, value] of Object.entries(options.env ?? {})) args.push('-e', `${key}=${value}`);
  for (const volume of options.volumes ?? []) args.push('-v', volume);
  await podman([...args, image]);
  const logs = async (): Promise<string> => {
    const { stdout, stderr } = await execFileAsync('podman', [...PODMAN_GLOBAL, 'logs', name], {
      maxBuffer: 64 * 1024 * 1024,
    }).catch((error: { stdout?: string; stderr?: string }) => ({
      stdout: error.stdout ?? '',
      stderr: error.stderr ?? '',
    }));
    return `${stdout}${stderr}`;
  };
  return {
    name,
    url: `http://127.0.0.1:${port}`,
    logs,
    async stop(graceSeconds) {
      const started = performance.now();
      await podman(['stop', '-t', String(graceSeconds), name], (graceSeconds + 30) * 1000);
      const seconds = (performance.now() - started) / 1000;
      const exitCode = Number(await podman(['inspect', '--format', '{{.State.ExitCode}}', name]));
      return { seconds, exitCode };
    },
    async remove() {
      await podmanStatus(['rm', '-f', '-t', '0', name]);
    },
  };
}

/** Polls /health/ready until 200; fails early, with the container's log, if the container stops. */
export async function waitReady(container: RunningContainer, timeoutMs: number): Promise<number> {
  const started = performance.now();
  while (performance.now() - started < timeoutMs) {
    const res = await fetch(`${container.url}/health/ready`).catch(() => undefined);
    if (res?.status === 200) return performance.now() - started;
    await res?.body?.cancel();
    const running = await podman(['inspect', '--format', '{{.State.Running}}', container.name]);
    if (running !== 'true') {
      throw new Error(`container ${container.name} stopped before ready:\n${await container.logs()}`);
    }
    await new Promise((resolveWait) => setTimeout(resolveWait, 500));
  }
  throw new Error(`container ${container.name} not ready after ${timeoutMs} ms:\n${await container.logs()}`);
}

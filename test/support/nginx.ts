import { ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort } from './free-port';

export const NGINX_CONF = resolve(__dirname, '../../docker/nginx/nginx.conf');

export interface RunningNginx {
  url: string;
  dir: string;
  stop(): Promise<void>;
}

/** Rewrites the lines of docker/nginx/nginx.conf marked `# e2e: <what>`; fails if one is missing. */
export function deriveConfig(source: string, values: Record<string, string>): string {
  let text = source;
  for (const [marker, line] of Object.entries(values)) {
    const pattern = new RegExp(`^(\\s*).*# e2e: ${marker}$`, 'm');
    if (!pattern.test(text)) {
      throw new Error(`docker/nginx/nginx.conf has no line marked "# e2e: ${marker}"`);
    }
    text = text.replace(pattern, `$1${line}`);
  }
  return text;
}

/**
 * The shipped upstream `server` line for each loopback port: the same parameters (max_fails, ...) with
 * the address swapped. `resolve` goes: an IP address needs no re-resolution, and Debian 12's Nginx
 * (1.22) does not know the parameter.
 */
export function upstreamServers(source: string, ports: number[]): string {
  const shipped = /^\s*server \S+((?: \w+(?:=\S+)?)*);\s*# e2e: upstream$/m.exec(source);
  if (!shipped) throw new Error('docker/nginx/nginx.conf has no `server ...; # e2e: upstream` line');
  const parameters = shipped[1].replace(/ resolve\b/, '');
  return ports.map((port) => `server 127.0.0.1:${port}${parameters};`).join(' ');
}

/**
 * Starts the real nginx with the project's config in front of the app(s) on `upstreamPorts`, on a free
 * loopback port.
 */
export async function startNginx(upstreamPorts: number | number[]): Promise<RunningNginx> {
  const dir = mkdtempSync(join(tmpdir(), 'nginx-e2e-'));
  chmodSync(dir, 0o755);
  const temp = ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'];
  for (const name of temp) {
    mkdirSync(join(dir, name));
    chmodSync(join(dir, name), 0o777); // workers run as nobody when the master runs as root
  }
  const port = await freePort();
  const source = readFileSync(NGINX_CONF, 'utf8');
  const config = deriveConfig(source, {
    pid: `pid ${dir}/nginx.pid;`,
    error_log: `error_log ${dir}/error.log warn;`,
    access_log: `access_log ${dir}/access.log json; ${temp.map((name) => `${name === 'body' ? 'client_body' : name}_temp_path ${dir}/${name};`).join(' ')}`,
    upstream: upstreamServers(source, ([] as number[]).concat(upstreamPorts)),
    listen: `listen 127.0.0.1:${port};`,
  });
  const configPath = join(dir, 'nginx.conf');
  writeFileSync(configPath, config);

  const child: ChildProcess = spawn('nginx', ['-p', dir, '-c', configPath, '-g', 'daemon off;'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolveExit) => child.once('exit', () => resolveExit()));
  const spawnError = new Promise<never>((_, reject) => child.once('error', reject));

  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) {
      throw new Error(`nginx exited with ${child.exitCode}: ${stderr}`);
    }
    const up = await Promise.race([
      fetch(`${url}/health/live`).then(
        (res) => res.ok,
        () => false,
      ),
      spawnError,
    ]);
    if (up) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`nginx did not come up on ${url}: ${stderr}`);
    }
    await new Promise((wait) => setTimeout(wait, 50));
  }

  return {
    url,
    dir,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

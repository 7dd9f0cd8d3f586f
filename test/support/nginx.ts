import { ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const NGINX_CONF = resolve(__dirname, '../../docker/nginx/nginx.conf');

export interface RunningNginx {
  url: string;
  dir: string;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolvePort(port));
    });
  });
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

/** Starts the real nginx with the project's config in front of `upstreamPort`, on a free loopback port. */
export async function startNginx(upstreamPort: number): Promise<RunningNginx> {
  const dir = mkdtempSync(join(tmpdir(), 'nginx-e2e-'));
  chmodSync(dir, 0o755);
  const temp = ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'];
  for (const name of temp) {
    mkdirSync(join(dir, name));
    chmodSync(join(dir, name), 0o777); // workers run as nobody when the master runs as root
  }
  const port = await freePort();
  const config = deriveConfig(readFileSync(NGINX_CONF, 'utf8'), {
    pid: `pid ${dir}/nginx.pid;`,
    error_log: `error_log ${dir}/error.log warn;`,
    access_log: `access_log ${dir}/access.log json; ${temp.map((name) => `${name === 'body' ? 'client_body' : name}_temp_path ${dir}/${name};`).join(' ')}`,
    upstream: `server 127.0.0.1:${upstreamPort} max_fails=3 fail_timeout=10s;`,
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

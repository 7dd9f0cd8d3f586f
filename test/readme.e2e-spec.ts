import { ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort } from './support/free-port';
import { assertPrerequisites } from './support/test-app';
import { CHILD_HOME, CHILD_PATH } from './support/test-env';

/**
 * The README's first run, as a new user does it: the built server started by the Makefile's own
 * `serve` recipe (the demo model on the CPU, --demo), then every README block marked `first-run`
 * run as written, in order, from a fresh shell in a copy of the checkout (links to its dist,
 * node_modules, build and models; no .env, no .demo key, no KEY in the environment). Only the port
 * differs: a free one instead of 6008, which another server on this machine may hold.
 */
const ROOT = resolve(__dirname, '..');
const README_PORT = 6008;

interface Block {
  lang: string;
  /** `js first-run embed.mjs`: saved as that file and run with `node embed.mjs`, as the README says. */
  file?: string;
  text: string;
}

function firstRunBlocks(): Block[] {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  return [...readme.matchAll(/^```(\w+) first-run(?: (\S+))?\n([\s\S]*?)^```$/gm)].map((match) => ({
    lang: match[1],
    file: match[2],
    text: match[3],
  }));
}

/** The `serve` recipe of the Makefile with its variables filled in. */
function serveCommand(): string {
  const makefile = readFileSync(join(ROOT, 'Makefile'), 'utf8');
  const demoModel = /^DEMO_MODEL \?= (.+)$/m.exec(makefile)![1].trim();
  const recipe = /^serve:.*\n\t(.+)$/m.exec(makefile)![1];
  return recipe.replace(/\$\(DEMO_MODEL\)/g, demoModel);
}

/** What a fresh login shell would have: no keys, no model settings. */
function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: CHILD_PATH, HOME: CHILD_HOME ?? tmpdir(), ...extra };
}

describe('README first run', () => {
  const blocks = firstRunBlocks();
  let work: string;
  let port: number;
  let server: ChildProcess;
  let stdout = '';
  let output = '';

  beforeAll(async () => {
    assertPrerequisites();
    for (const built of ['dist/apps/api/src/main.js', 'dist/apps/admin/src/main.js']) {
      if (!existsSync(join(ROOT, built)))
        throw new Error(`${built} is missing: \`npm run build\` (make build)`);
    }
    work = mkdtempSync(join(tmpdir(), 'readme-first-run-'));
    for (const entry of ['package.json', 'node_modules', 'dist', 'build', 'models']) {
      symlinkSync(join(ROOT, entry), join(work, entry));
    }
    port = await freePort();
    server = spawn('bash', ['-c', serveCommand()], {
      cwd: work,
      env: cleanEnv({ PORT: String(port) }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    server.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    server.stderr!.resume();
    const deadline = Date.now() + 90_000;
    while (!/^\s+ready: /m.test(stdout)) {
      if (server.exitCode !== null || Date.now() > deadline) {
        throw new Error(`the server did not get ready (exit ${server.exitCode}):\n${stdout.slice(-3000)}`);
      }
      await new Promise((wait) => setTimeout(wait, 100));
    }

    // Every marked block, in order, in one shell: what one exports, the next sees.
    const script = blocks
      .map((block, index) => {
        const text = block.text.replaceAll(`localhost:${README_PORT}`, `localhost:${port}`);
        const body = block.file
          ? `cat > ${block.file} <<'__README_BLOCK__'\n${text}__README_BLOCK__\nnode ${block.file}\n`
          : text;
        // A line of its own, whether or not the previous output ended with one (curl's does not).
        return `echo; echo '@@ block ${index}'\n${body}`;
      })
      .join('\n');
    output = await new Promise<string>((resolveRun, reject) =>
      execFile(
        'bash',
        ['-euo', 'pipefail', '-c', script],
        { cwd: work, env: cleanEnv(), timeout: 120_000, maxBuffer: 16 << 20 },
        (error, out, err) =>
          error
            ? reject(new Error(`README blocks failed: ${error.message}\n${out}\n${err}`))
            : resolveRun(out),
      ),
    );
  }, 240_000);

  afterAll(async () => {
    if (server && server.exitCode === null) {
      const exited = new Promise((done) => server.once('exit', done));
      server.kill('SIGTERM');
      await exited;
    }
    if (work) rmSync(work, { recursive: true, force: true });
  });

  const blockOutput = (index: number) => output.split(/^@@ block \d+\n/m)[index + 1] ?? '';

  it('marks the curl, the Node snippet and the admin commands for this test', () => {
    expect(blocks.map((block) => [block.lang, block.file])).toEqual([
      ['bash', undefined],
      ['js', 'embed.mjs'],
      ['bash', undefined],
    ]);
  });

  it('prints the key line and the curl hint only once the model is ready', () => {
    expect(stdout).toContain('use it:  export KEY=$(cat ');
    const ready = stdout.search(/^\s+ready: /m);
    expect(stdout.indexOf('try: curl')).toBeGreaterThan(ready);
    expect(stdout.slice(0, ready)).not.toContain('curl');
  });

  it('answers the README curl with the key the banner points at', () => {
    const body = JSON.parse(blockOutput(0)) as {
      model: string;
      data: { embedding: number[] }[];
      usage: { prompt_tokens: number };
    };
    expect(body.model).toBe('Qwen3-Embedding-tiny');
    expect(body.data.map((row) => row.embedding.length)).toEqual([256, 256]);
    expect(body.usage.prompt_tokens).toBeGreaterThan(2);
  });

  it('runs the README Node snippet as saved', () => {
    expect(blockOutput(1)).toMatch(/^1024 \{ prompt_tokens: \d+, total_tokens: \d+ \}$/m);
  });

  it('runs the admin commands right after make serve, on the served model', () => {
    const admin = blockOutput(2);
    expect(admin).toMatch(/^Qwen3-Embedding-tiny on cpu \(float32, tp 1\), 1024 dimensions/m);
    expect(admin).toContain('cosine similarity');
    expect(admin).toMatch(/^status\s+OK/m);
  });
});

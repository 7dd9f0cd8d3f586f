import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export interface BuildInfo {
  /** package.json's version. */
  version: string;
  /** The checkout's commit (short hash), or 'unknown' outside a git checkout (an image). */
  commit: string;
}

let cached: BuildInfo | undefined;

/** Read once: the package root is the nearest folder above this file with a package.json. */
export function buildInfo(): BuildInfo {
  if (cached) return cached;
  let root = __dirname;
  while (!existsSync(join(root, 'package.json')) && dirname(root) !== root) root = dirname(root);
  let version = 'unknown';
  try {
    version =
      (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version?: string }).version ??
      version;
  } catch {
    // no package.json: left unknown
  }
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 2_000,
    })
      .toString()
      .trim();
  } catch {
    // no git or no checkout
  }
  cached = { version, commit };
  return cached;
}

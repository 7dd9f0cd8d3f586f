/**
 * What the commands that talk to a running server (`admin bench`, `admin rerank`) share: the
 * --api-key option and the key they fall back to, the base URL, and their stderr lines.
 */
import { discoverClientApiKey } from '@app/config';

/** One line on stderr: progress and notes, so stdout stays the result (a table or JSON). */
export function logLine(line: string): void {
  process.stderr.write(`${line}\n`);
}

export const API_KEY_OPTION = {
  flags: '--api-key <key>',
  description: 'bearer key (default: $API_KEY, else $KEY, else .demo/api-key as `make serve` writes it)',
};

/** --url's value, checked and normalised (a trailing slash after the host). */
export function parseServerUrl(value: string): string {
  return new URL(value).toString();
}

/**
 * The key the first run uses when --api-key is not given (API_KEY, KEY, .demo/api-key); says on `log`
 * when there is none, since a server that checks keys then answers 401, and with `sayWhere` where it
 * came from.
 */
export function discoverApiKey(
  command: string,
  log: (line: string) => void,
  sayWhere: boolean,
): string | undefined {
  const found = discoverClientApiKey();
  if (!found) {
    log(
      `${command}: no key (--api-key, API_KEY, KEY or .demo/api-key); a server that checks keys answers 401`,
    );
  } else if (sayWhere) {
    log(`${command}: key from ${found.source}`);
  }
  return found?.key;
}

/** A closed-loop run's progress on `log`, at most every 2 s and at the end; nothing with --json. */
export function progressLog(
  json: boolean | undefined,
  log: (line: string) => void,
): (done: number, total: number) => void {
  let lastShown = 0;
  return (done, total) => {
    const now = Date.now();
    if (!json && (now - lastShown > 2000 || done === total)) {
      lastShown = now;
      log(`  ${done}/${total}`);
    }
  };
}

import type { IncomingMessage, ServerResponse } from 'node:http';
import { InvalidRequestError } from './domain.error';

/**
 * Bounds on the structure of a JSON request body, checked on the raw bytes before JSON.parse.
 * JSON.parse time is not proportional to bytes alone: on the dev machine 1.5 MB holding one object
 * of 100k keys takes 120-390 ms (V8 builds a dictionary object), 16 MB of `{},` 6.3 s and 16 MB of
 * `[` 6.9 s, all on the event loop. Under these bounds the parse of a body stays within a few times
 * that of a plain body of the same size (docs/operations.md, "Request parsing bounds"). An embeddings body
 * needs depth 3, 9 fields, 2049 arrays and 2066 strings.
 */
export const JSON_BODY_LIMITS = {
  /** Arrays and objects inside one another (the body itself is level 1). */
  maxDepth: 16,
  /** Object fields in the whole body. */
  maxFields: 1_024,
  /** Arrays and objects in the whole body. */
  maxContainers: 65_536,
  /** Strings in the whole body, keys included (16 MB of `"a",` takes 0.7 s to parse). */
  maxStrings: 65_536,
} as const;

export type JsonBodyLimits = { readonly [K in keyof typeof JSON_BODY_LIMITS]: number };

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const OPEN_ARRAY = 0x5b;
const OPEN_OBJECT = 0x7b;
const CLOSE_ARRAY = 0x5d;
const CLOSE_OBJECT = 0x7d;

/** The bytes that give JSON its structure; everything else between them is skipped natively. */
const STRUCTURAL = [QUOTE, OPEN_ARRAY, CLOSE_ARRAY, OPEN_OBJECT, CLOSE_OBJECT, COLON] as const;
const STRUCTURAL_BYTE = new Uint8Array(256);
for (const byte of STRUCTURAL) STRUCTURAL_BYTE[byte] = 1;

/** The quote that closes the string opened at `open`: the first one after an even run of backslashes. */
function closingQuote(bytes: Buffer, open: number): number {
  let close = bytes.indexOf(QUOTE, open + 1);
  while (close !== -1) {
    let backslashes = 0;
    while (bytes[close - 1 - backslashes] === BACKSLASH) backslashes++;
    if (backslashes % 2 === 0) return close;
    close = bytes.indexOf(QUOTE, close + 1);
  }
  return -1;
}

/** Counts against the limits, one structural byte at a time. */
class ShapeCount {
  private depth = 0;
  private fields = 0;
  private containers = 0;
  private strings = 0;

  constructor(private readonly limits: JsonBodyLimits) {}

  /** Why `byte` (a structural byte outside strings) breaks a limit, or undefined. */
  take(byte: number): string | undefined {
    const { limits } = this;
    if (byte === QUOTE) {
      if (++this.strings > limits.maxStrings)
        return `the JSON body has more than ${limits.maxStrings} strings`;
    } else if (byte === OPEN_ARRAY || byte === OPEN_OBJECT) {
      if (++this.depth > limits.maxDepth)
        return `the JSON body is nested deeper than ${limits.maxDepth} levels`;
      if (++this.containers > limits.maxContainers) {
        return `the JSON body has more than ${limits.maxContainers} arrays and objects`;
      }
    } else if (byte === CLOSE_ARRAY || byte === CLOSE_OBJECT) {
      this.depth--;
    } else if (byte === COLON && ++this.fields > limits.maxFields) {
      return `the JSON body has more than ${limits.maxFields} object fields`;
    }
    return undefined;
  }
}

/** Below this size (a short query's body) a byte-by-byte loop is quicker than six memchr passes. */
const SMALL_BODY_BYTES = 4_096;

/**
 * Why a JSON text breaks `limits`, or undefined. String contents are skipped with `indexOf`
 * (memchr); a large body is walked from one structural byte to the next by memchr too, so digits
 * cost native speed: on the dev machine 16 MB of token ids scan in ~13 ms, against ~90 ms to parse.
 * Malformed JSON that stays within the bounds is left for JSON.parse to report.
 */
export function jsonBodyShapeProblem(
  bytes: Buffer,
  limits: JsonBodyLimits = JSON_BODY_LIMITS,
): string | undefined {
  const count = new ShapeCount(limits);
  if (bytes.length < SMALL_BODY_BYTES) {
    for (let i = 0; i < bytes.length; i++) {
      const byte = bytes[i];
      if (!STRUCTURAL_BYTE[byte]) continue;
      const problem = count.take(byte);
      if (problem) return problem;
      if (byte === QUOTE) {
        i = closingQuote(bytes, i);
        if (i === -1) return undefined; // unterminated: JSON.parse says so
      }
    }
    return undefined;
  }
  // The next position of each structural byte (-1: none left); a stale one (inside a skipped string)
  // is looked up again from there, so each kind searches each byte at most once.
  const next: number[] = STRUCTURAL.map((byte) => bytes.indexOf(byte));
  let from = 0;
  for (;;) {
    let at = -1;
    let byte = 0;
    for (let kind = 0; kind < STRUCTURAL.length; kind++) {
      let position = next[kind];
      if (position !== -1 && position < from) {
        position = next[kind] = bytes.indexOf(STRUCTURAL[kind], from);
      }
      if (position !== -1 && (at === -1 || position < at)) {
        at = position;
        byte = STRUCTURAL[kind];
      }
    }
    if (at === -1) return undefined;
    const problem = count.take(byte);
    if (problem) return problem;
    from = at + 1;
    if (byte === QUOTE) {
      const close = closingQuote(bytes, at);
      if (close === -1) return undefined;
      from = close + 1;
    }
  }
}

/**
 * body-parser's `verify` hook: runs on the raw (inflated) bytes before JSON.parse and refuses a body
 * out of bounds with 400 `invalid_body`.
 */
export function verifyJsonBodyShape(_req: IncomingMessage, _res: ServerResponse, bytes: Buffer): void {
  const problem = jsonBodyShapeProblem(bytes);
  if (problem) {
    throw new InvalidRequestError(`Invalid request body: ${problem}.`, null, 'invalid_body');
  }
}

/**
 * Whether a parsed value nests arrays and objects deeper than `maxDepth` (the value itself is level
 * 1). Iterative, so a deep value cannot overflow the stack here.
 */
export function nestedDeeperThan(value: unknown, maxDepth: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [current, depth] = stack.pop()!;
    if (typeof current !== 'object' || current === null) continue;
    if (depth > maxDepth) return true;
    const children = Array.isArray(current) ? current : Object.values(current);
    for (const child of children) {
      if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
    }
  }
  return false;
}

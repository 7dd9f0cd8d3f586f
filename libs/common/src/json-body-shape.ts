import type { IncomingMessage, ServerResponse } from 'node:http';
import { InvalidRequestError } from './domain.error';

/**
 * Bounds on the structure of a JSON request body, checked on the raw bytes before JSON.parse.
 * JSON.parse time is not proportional to bytes alone: on the dev machine 1.5 MB holding one object
 * of 100k keys takes 120-390 ms (V8 builds a dictionary object), 16 MB of `{},` 6.3 s and 16 MB of
 * `[` 6.9 s, all on the event loop. Under these bounds the parse of a body stays within a few times
 * that of a plain body of the same size (docs/service.md, "Request parsing"). An embeddings body
 * needs depth 3, 9 fields and 2049 arrays.
 */
export const JSON_BODY_LIMITS = {
  /** Arrays and objects inside one another (the body itself is level 1). */
  maxDepth: 16,
  /** Object fields in the whole body. */
  maxFields: 1_024,
  /** Arrays and objects in the whole body. */
  maxContainers: 65_536,
} as const;

export type JsonBodyLimits = { readonly [K in keyof typeof JSON_BODY_LIMITS]: number };

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const OPEN_ARRAY = 0x5b;
const OPEN_OBJECT = 0x7b;
const CLOSE_ARRAY = 0x5d;
const CLOSE_OBJECT = 0x7d;

/**
 * Why a JSON text breaks `limits`, or undefined. One pass; string contents are skipped by
 * `indexOf` (memchr), so a body of text costs little more than finding its quotes. Malformed JSON
 * that stays within the bounds is left for JSON.parse to report.
 */
export function jsonBodyShapeProblem(
  bytes: Buffer,
  limits: JsonBodyLimits = JSON_BODY_LIMITS,
): string | undefined {
  let depth = 0;
  let fields = 0;
  let containers = 0;
  const end = bytes.length;
  for (let i = 0; i < end; i++) {
    const byte = bytes[i];
    if (byte === QUOTE) {
      // The closing quote is the first one preceded by an even run of backslashes.
      let close = bytes.indexOf(QUOTE, i + 1);
      while (close !== -1) {
        let backslashes = 0;
        while (bytes[close - 1 - backslashes] === BACKSLASH) backslashes++;
        if (backslashes % 2 === 0) break;
        close = bytes.indexOf(QUOTE, close + 1);
      }
      if (close === -1) return undefined; // unterminated: JSON.parse says so
      i = close;
    } else if (byte === OPEN_ARRAY || byte === OPEN_OBJECT) {
      if (++depth > limits.maxDepth) {
        return `the JSON body is nested deeper than ${limits.maxDepth} levels`;
      }
      if (++containers > limits.maxContainers) {
        return `the JSON body has more than ${limits.maxContainers} arrays and objects`;
      }
    } else if (byte === CLOSE_ARRAY || byte === CLOSE_OBJECT) {
      depth--;
    } else if (byte === COLON && ++fields > limits.maxFields) {
      return `the JSON body has more than ${limits.maxFields} object fields`;
    }
  }
  return undefined;
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

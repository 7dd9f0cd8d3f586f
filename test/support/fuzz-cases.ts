/**
 * Seeded request generators for the fuzz suite (test/fuzz.e2e-spec.ts): JSON bodies of every type at
 * every field, token ids around the vocabulary's edge, special-token texts, every option with valid and
 * invalid values, malformed bodies, content types and encodings, headers, odd methods and paths, and
 * raw-socket framing. Each case says how it may be answered (`mustSucceed`) and which family it
 * belongs to, so failures group by cause.
 */
import { brotliCompressSync, constants, deflateSync, gzipSync } from 'node:zlib';
import fc from 'fast-check';

/** Sent in place of a JSON value, verbatim: number literals JSON.stringify cannot write, deep nesting. */
export class RawJson {
  constructor(readonly text: string) {}
}

/** An object written with its entries as given, repeated keys included. */
export class Entries {
  constructor(readonly entries: ReadonlyArray<readonly [string, unknown]>) {}
}

/** JSON text of a generated value (RawJson verbatim, Entries with duplicates, NaN/Infinity as null). */
export function toJsonText(value: unknown): string {
  if (value instanceof RawJson) return value.text;
  if (value instanceof Entries) {
    return `{${value.entries.map(([key, item]) => `${JSON.stringify(key)}:${toJsonText(item)}`).join(',')}}`;
  }
  if (Array.isArray(value)) return `[${value.map(toJsonText).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    return `{${Object.entries(value)
      .map(([key, item]) => `${JSON.stringify(key)}:${toJsonText(item)}`)
      .join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

export interface RequestSpec {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer;
  /** Send with chunked framing instead of Content-Length. */
  chunked?: boolean;
}

export interface FuzzCase {
  /** What the case is about; violations are grouped by it. */
  family: string;
  /** Benign variations applied on top (gzip, charset spelling...), shown with examples. */
  tags: string[];
  /** The text the body carries before content encoding, as the server decodes it (JSON or not). */
  jsonText?: string;
  /** Built valid: anything but 200 (or a legitimate 429/503) is a violation. */
  mustSucceed: boolean;
  /** Sent with Node's HTTP client over a keep-alive pool... */
  http?: RequestSpec;
  /** ...or as bytes on a fresh socket (framing cases), optionally half-closed after writing. */
  raw?: { bytes: Buffer; halfClose: boolean };
}

export interface CaseContext {
  apiKey: string;
  servedModel: string;
  /** Columns of the embedding table: token ids at or past it have no row. */
  vocabRows: number;
  hiddenSize: number;
  bodyLimitBytes: number;
}

// ---------------------------------------------------------------------------------------------------
// Texts

/** Added tokens of the Qwen3 tokenizer that have a row in the embedding table (151643-151664). */
const SPECIAL_IN_TABLE = [
  '<|endoftext|>',
  '<|im_start|>',
  '<|im_end|>',
  '<|object_ref_start|>',
  '<|box_start|>',
  '<|vision_pad|>',
  '<|video_pad|>',
  '<tool_call>',
  '</tool_call>',
  '<|fim_prefix|>',
  '<|fim_pad|>',
  '<|repo_name|>',
  '<|file_sep|>',
];
/** Added tokens past the table's 151665 rows (issue 14, criterion 1). */
const SPECIAL_PAST_TABLE = ['<tool_response>', '</tool_response>', '<think>', '</think>'];

const EDGE_PIECES = [
  '\u0000',
  '\u0001',
  '\u001f',
  '\u007f',
  '\u0085',
  '\t',
  '\n',
  '\r\n',
  ' ',
  '\u00a0',
  '\u200b',
  '\u200d',
  '\u200e',
  '\u200f',
  '\u202e',
  '\u2028',
  '\ufeff',
  '\ufffd',
  '\uffff',
  'e\u0301',
  'مرحبا',
  'שלום',
  '中文',
  '日本語',
  'Ａ',
  '🙂',
  '👨‍👩‍👧‍👦',
  '🏳️‍🌈',
  '\u{10ffff}',
  '\\',
  '"',
  '\\u0000',
  '%s%n',
  '${x}',
  'Instruct: x\nQuery:',
  '{"input":"x"}',
];
/** Pieces of special tokens, which may join into one in a text. */
const SPECIAL_FRAGMENTS = ['<|endoftext', '|>', '<think', '>', '</'];

const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((code) => String.fromCharCode(code));
/**
 * Code points of many scripts and planes, surrogates excluded. Drawn from ranges rather than with
 * fast-check's 'grapheme'/'binary' units, whose lookup tables cost seconds to build.
 */
const codePoint = fc
  .oneof(
    fc.integer({ min: 0x80, max: 0x7ff }),
    fc.integer({ min: 0x800, max: 0xd7ff }),
    fc.integer({ min: 0xe000, max: 0xffff }),
    fc.integer({ min: 0x1f300, max: 0x1faff }),
    fc.integer({ min: 0x10000, max: 0x10ffff }),
  )
  .map((code) => String.fromCodePoint(code));
const oneOf = <T>(units: T[]): fc.Arbitrary<T> => fc.constantFrom(...units);

/**
 * One piece of text: mostly ASCII, with unicode, control characters, lone surrogates, specials. Built
 * once per kind: fast-check's unicode units build a large lookup table on first use.
 */
function makeTextUnit(withSpecials: boolean): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 10, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }) },
    { weight: 3, arbitrary: oneOf(['the', ' word', ' of', ' 42', '.', ',']) },
    { weight: 5, arbitrary: codePoint },
    { weight: 3, arbitrary: oneOf(EDGE_PIECES) },
    { weight: 1, arbitrary: loneSurrogate },
    { weight: withSpecials ? 1 : 0, arbitrary: oneOf([...SPECIAL_IN_TABLE, ...SPECIAL_FRAGMENTS]) },
    { weight: withSpecials ? 2 : 0, arbitrary: oneOf(SPECIAL_PAST_TABLE) },
  );
}
// Texts of valid requests carry no special token: issue 14 lets the service refuse those per input.
const textUnits = { plain: makeTextUnit(false), any: makeTextUnit(true) };
const textUnit = (withSpecials: boolean): fc.Arbitrary<string> =>
  withSpecials ? textUnits.any : textUnits.plain;

/**
 * Non-empty text that fits MAX_INPUT_TOKENS=128 with a prompt: at most 100 UTF-8 bytes, and a
 * byte-level BPE never makes more tokens than bytes.
 */
const validText = fc
  .string({ unit: textUnit(false), minLength: 1, maxLength: 12 })
  .filter((text) => Buffer.byteLength(text) <= 100);
const anyText = fc.string({ unit: textUnit(true), minLength: 0, maxLength: 20 });

/** A string of `length` UTF-16 units repeating one piece (built at once, not unit by unit). */
const longText = (lengths: fc.Arbitrary<number>): fc.Arbitrary<string> =>
  fc
    .tuple(
      oneOf(['a', 'word ', '🙂', '\u0000', 'مرحبا ', '<|endoftext|>', '<think>', '\ud800', ' ']),
      lengths,
    )
    .map(([piece, length]) => piece.repeat(Math.ceil(length / piece.length)).slice(0, length));

// ---------------------------------------------------------------------------------------------------
// Values

const RAW_NUMBERS = [
  '-0',
  '0.0',
  '-0.0',
  '1e400',
  '-1e400',
  '1e-400',
  '32.0',
  '3.2e1',
  '1E2',
  '64.00000000000000001',
  '9007199254740993',
  '-9007199254740993',
  '151664.99999999999999999',
  '1e308',
];

const numbers: fc.Arbitrary<unknown> = fc.oneof(
  fc.integer(),
  fc.double(),
  oneOf([0, -1, 1, 31, 32, 33, 1023, 1024, 1025, 2560, 2 ** 31, -(2 ** 31), 2 ** 53, 1.5, -0.5]),
  oneOf(RAW_NUMBERS).map((text) => new RawJson(text)),
);

const NUMBER_STRINGS = [
  'NaN',
  'Infinity',
  '-Infinity',
  '1e9999',
  '0x20',
  ' 64',
  '64 ',
  '３２',
  '64',
  '-0',
  '',
];

/** Keys that mean something to JavaScript objects or to this API. */
const ODD_KEYS = [
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'hasOwnProperty',
  'valueOf',
  'input ',
  'Input',
  'INPUT',
  'input\u0000',
  '',
  ' ',
  '$where',
  'dimensions.x',
  'access_token',
];

const keyText = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: 'grapheme-ascii', maxLength: 12 }) },
  { weight: 2, arbitrary: oneOf(ODD_KEYS) },
  { weight: 1, arbitrary: fc.string({ unit: textUnit(true), maxLength: 6 }) },
);

/** Any JSON value, shallow: every type, unicode-edge strings, odd numbers, objects with odd keys. */
const anyValue: fc.Arbitrary<unknown> = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    { weight: 4, arbitrary: anyText },
    { weight: 3, arbitrary: numbers },
    { weight: 1, arbitrary: oneOf(NUMBER_STRINGS) },
    { weight: 2, arbitrary: oneOf<unknown>([null, true, false]) },
    { weight: 2, arbitrary: fc.array(tie('value'), { maxLength: 5 }) },
    { weight: 1, arbitrary: fc.dictionary(keyText, tie('value'), { maxKeys: 4 }) },
  ),
})).value;

// ---------------------------------------------------------------------------------------------------
// Body families

interface Body {
  family: string;
  mustSucceed: boolean;
  /** A JSON value (serialised with toJsonText) or the exact bytes of a body that is not JSON. */
  value?: unknown;
  bytes?: Buffer;
}

function tokenIds(ctx: CaseContext, edge: boolean): fc.Arbitrary<number> {
  const table = fc.oneof(
    { weight: 6, arbitrary: fc.integer({ min: 0, max: ctx.vocabRows - 1 }) },
    { weight: 2, arbitrary: fc.integer({ min: 0, max: 1000 }) },
    { weight: 1, arbitrary: fc.integer({ min: ctx.vocabRows - 30, max: ctx.vocabRows - 1 }) },
  );
  if (!edge) return table;
  return fc.oneof(
    { weight: 6, arbitrary: table },
    { weight: 2, arbitrary: fc.integer({ min: ctx.vocabRows, max: ctx.vocabRows + 8 }) },
    { weight: 1, arbitrary: oneOf([-1, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 53, 1.5, -0.5]) },
  );
}

/** input values the API accepts: a text, texts, ids, id lists (ids inside the table). */
function validInput(ctx: CaseContext): fc.Arbitrary<{ input: unknown; short: boolean }> {
  const ids = tokenIds(ctx, false);
  return fc.oneof(
    { weight: 4, arbitrary: validText.map((input) => ({ input, short: true })) },
    {
      weight: 4,
      arbitrary: fc.array(validText, { minLength: 1, maxLength: 8 }).map((input) => ({ input, short: true })),
    },
    {
      weight: 2,
      arbitrary: fc.array(ids, { minLength: 1, maxLength: 32 }).map((input) => ({ input, short: false })),
    },
    {
      weight: 2,
      arbitrary: fc
        .array(fc.array(ids, { minLength: 1, maxLength: 24 }), { minLength: 1, maxLength: 8 })
        .map((input) => ({ input, short: false })),
    },
    {
      // Many small inputs (no prompt: 200 of them fit MAX_REQUEST_TOKENS=2048 only as documents).
      weight: 1,
      arbitrary: fc
        .array(fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 2 }), {
          minLength: 9,
          maxLength: 200,
        })
        .map((input) => ({ input, short: false })),
    },
  );
}

const INSTRUCTIONS = ['Given a question, retrieve passages that answer it', 'Find code', '検索', 'x'];

function modelNames(ctx: CaseContext): string[] {
  return [ctx.servedModel, ctx.servedModel.toLowerCase(), `Qwen/${ctx.servedModel}`];
}

/** Built valid (fields and limits as docs/api.md states): must be answered 200. */
function validBody(ctx: CaseContext): fc.Arbitrary<Body> {
  return fc
    .record({
      input: validInput(ctx),
      model: fc.option(oneOf(modelNames(ctx)), { nil: undefined }),
      encoding_format: fc.option(oneOf(['float', 'base64']), { nil: undefined }),
      dimensions: fc.option(fc.integer({ min: 32, max: ctx.hiddenSize }), { nil: undefined }),
      // At most 10 units of at most 25 UTF-16 units each: within the 256 characters allowed.
      user: fc.option(fc.string({ unit: textUnit(true), maxLength: 10 }), { nil: undefined }),
      prompt: fc.constantFrom('none', 'query', 'document', 'prompt_name', 'instruction', 'both'),
      instruction: oneOf(INSTRUCTIONS),
      truncate: fc.option(fc.boolean(), { nil: undefined }),
    })
    .map((r) => {
      const body: Record<string, unknown> = { input: r.input.input };
      if (r.model !== undefined) body.model = r.model;
      if (r.encoding_format !== undefined) body.encoding_format = r.encoding_format;
      if (r.dimensions !== undefined) body.dimensions = r.dimensions;
      if (r.user !== undefined) body.user = r.user;
      if (r.truncate !== undefined) body.truncate = r.truncate;
      // Prompts apply to text only, and a query prompt on 200 inputs would pass the request's token limit.
      if (r.input.short) {
        if (r.prompt === 'query' || r.prompt === 'document') body.input_type = r.prompt;
        if (r.prompt === 'prompt_name') body.prompt_name = 'query';
        if (r.prompt === 'both') Object.assign(body, { input_type: 'query', prompt_name: 'query' });
        if (r.prompt === 'instruction') body.instruction = r.instruction;
      }
      return { family: 'valid', mustSucceed: true, value: body };
    });
}

/**
 * Valid bodies with unknown keys or a repeated one. They may be answered 200 (JSON.parse keeps the last
 * of repeated keys; unknown fields are ignored) or refused, as issue 14 allows either.
 */
function extraKeysBody(ctx: CaseContext): fc.Arbitrary<Body> {
  return fc
    .tuple(validBody(ctx), fc.dictionary(keyText, anyValue, { minKeys: 1, maxKeys: 4 }), fc.boolean())
    .map(([valid, extra, repeat]) => {
      const fields = Object.entries(valid.value as Record<string, unknown>);
      const value = repeat
        ? new Entries([['input', 7], ...Object.entries(extra), ...fields])
        : new Entries([...Object.entries(extra), ...fields]);
      return { family: repeat ? 'repeated keys' : 'unknown keys', mustSucceed: false, value };
    });
}

/** Each option drawn from valid and invalid values. */
function optionValues(ctx: CaseContext): Record<string, fc.Arbitrary<unknown>> {
  const maybe = (values: unknown[]): fc.Arbitrary<unknown> =>
    fc.oneof(
      { weight: 3, arbitrary: fc.constant(undefined) },
      { weight: 3, arbitrary: oneOf(values) },
      { weight: 1, arbitrary: anyValue },
    );
  return {
    model: maybe([
      ...modelNames(ctx),
      'text-embedding-3-small',
      '',
      ' ',
      '../../etc/passwd',
      'Qwen/',
      'x'.repeat(5000),
    ]),
    encoding_format: maybe(['float', 'base64', 'FLOAT', 'Base64', 'binary', '', 'float ']),
    dimensions: maybe([
      32,
      64,
      ctx.hiddenSize,
      0,
      31,
      ctx.hiddenSize + 1,
      2560,
      4096,
      -32,
      32.5,
      '64',
      new RawJson('32.0'),
      new RawJson('1e400'),
      new RawJson('-0'),
    ]),
    user: maybe(['u', 'x'.repeat(256), 'x'.repeat(257), '\ud800']),
    input_type: maybe(['query', 'document', 'passage', 'QUERY', '']),
    prompt_name: maybe(['query', 'document', 'passage', '']),
    instruction: maybe([...INSTRUCTIONS, '', ' ', 'x'.repeat(4096), 'x'.repeat(4097), '<think>']),
    truncate: maybe([true, false, 'true', 1, 0]),
  };
}

/** Input values of the right shape and just past it. */
function nearValidInput(ctx: CaseContext): fc.Arbitrary<unknown> {
  const ids = tokenIds(ctx, true);
  return fc.oneof(
    { weight: 4, arbitrary: anyText },
    { weight: 4, arbitrary: fc.array(anyText, { minLength: 0, maxLength: 6 }) },
    { weight: 3, arbitrary: fc.array(ids, { minLength: 0, maxLength: 12 }) },
    {
      weight: 3,
      arbitrary: fc.array(fc.array(ids, { minLength: 0, maxLength: 8 }), { minLength: 0, maxLength: 4 }),
    },
    { weight: 1, arbitrary: fc.array(fc.oneof(anyText, ids), { minLength: 1, maxLength: 4 }) },
    { weight: 1, arbitrary: oneOf<unknown>([[[['a']]], [[]], [''], [[1], 'a'], [1, [2]], { 0: 'a' }]) },
    {
      weight: 1,
      arbitrary: fc.integer({ min: 2048, max: 2050 }).map((n) => Array.from({ length: n }, () => 'a')),
    },
  );
}

function nearValidBody(ctx: CaseContext): fc.Arbitrary<Body> {
  return fc.record({ input: nearValidInput(ctx), ...optionValues(ctx) }).map((r) => {
    const body: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(r)) if (item !== undefined) body[key] = item;
    return { family: 'near-valid', mustSucceed: false, value: body };
  });
}

/** Otherwise valid requests whose texts carry special tokens (those past the table included). */
function specialTokensBody(): fc.Arbitrary<Body> {
  const special = fc
    .array(fc.oneof(oneOf([...SPECIAL_PAST_TABLE, ...SPECIAL_IN_TABLE, ...SPECIAL_FRAGMENTS]), validText), {
      minLength: 1,
      maxLength: 4,
    })
    .map((parts) => parts.join(''));
  return fc
    .record({
      input: fc.oneof(special, fc.array(fc.oneof(special, validText), { minLength: 1, maxLength: 6 })),
      input_type: fc.option(oneOf(['query', 'document']), { nil: undefined }),
    })
    .map((r) => ({
      family: 'special-tokens',
      mustSucceed: false,
      value: r.input_type ? r : { input: r.input },
    }));
}

/** Every type at every field, unknown and repeated keys, non-object tops. */
function hostileBody(ctx: CaseContext): fc.Arbitrary<Body> {
  const fields = [
    'input',
    'model',
    'encoding_format',
    'dimensions',
    'user',
    'input_type',
    'prompt_name',
    'instruction',
    'truncate',
  ];
  const entry = fc.tuple(fc.oneof(oneOf(fields), keyText), anyValue);
  return fc.oneof(
    {
      weight: 6,
      arbitrary: fc
        .tuple(fc.option(nearValidInput(ctx), { nil: undefined }), fc.array(entry, { maxLength: 10 }))
        .map(([input, entries]) => ({
          family: 'hostile-json',
          mustSucceed: false,
          value: new Entries(input === undefined ? entries : [['input', input], ...entries]),
        })),
    },
    {
      weight: 1,
      arbitrary: anyValue.map((value) => ({ family: 'hostile-json', mustSucceed: false, value })),
    },
  );
}

/** Objects of many unknown keys (issue 14: class-transformer's cost grew with the square of them). */
function manyKeysBody(): fc.Arbitrary<Body> {
  return fc
    .record({
      keys: fc.oneof(
        { weight: 20, arbitrary: fc.integer({ min: 50, max: 5000 }) },
        { weight: 1, arbitrary: fc.integer({ min: 20_000, max: 100_000 }) },
      ),
      keyStyle: oneOf(['k', 'long', 'unicode', 'nested']),
      placement: oneOf(['top', 'input-object', 'unknown-field']),
    })
    .map(({ keys, keyStyle, placement }) => {
      const key = (i: number): string =>
        keyStyle === 'long' ? `${'k'.repeat(24)}${i}` : keyStyle === 'unicode' ? `ключ🙂${i}` : `k${i}`;
      const value = keyStyle === 'nested' ? '{"a":[1,{"b":null}]}' : '0';
      const object = `{${Array.from({ length: keys }, (_, i) => `${JSON.stringify(key(i))}:${value}`).join(',')}}`;
      const text =
        placement === 'top'
          ? `{"input":"many keys",${object.slice(1)}`
          : placement === 'input-object'
            ? `{"input":${object}}`
            : `{"input":"many keys","extra":${object}}`;
      return {
        family: keys >= 20_000 ? 'many-keys (20k-100k)' : 'many-keys',
        mustSucceed: false,
        value: new RawJson(text),
      };
    });
}

/** Nesting of arrays or objects from a few levels to far past any stack. */
function deepNestingBody(): fc.Arbitrary<Body> {
  return fc
    .record({
      depth: fc.oneof(
        fc.integer({ min: 2, max: 100 }),
        fc.integer({ min: 100, max: 3000 }),
        fc.integer({ min: 3000, max: 20_000 }),
      ),
      kind: oneOf(['array', 'object', 'mixed']),
      placement: oneOf(['input', 'input-item', 'unknown-field', 'option', 'top']),
    })
    .map(({ depth, kind, placement }) => {
      const open = (i: number): string =>
        kind === 'array' || (kind === 'mixed' && i % 2 === 0) ? '[' : '{"a":';
      const close = (i: number): string =>
        kind === 'array' || (kind === 'mixed' && i % 2 === 0) ? ']' : '}';
      let opens = '';
      let closes = '';
      for (let i = 0; i < depth; i++) {
        opens += open(i);
        closes = close(i) + closes;
      }
      const nested = `${opens}"x"${closes}`;
      const text =
        placement === 'input'
          ? `{"input":${nested}}`
          : placement === 'input-item'
            ? `{"input":["ok",${nested}]}`
            : placement === 'unknown-field'
              ? `{"input":"ok","meta":${nested}}`
              : placement === 'option'
                ? `{"input":"ok","dimensions":${nested}}`
                : nested;
      const band = depth < 100 ? '<100' : depth < 3000 ? '100-3000' : '3000-20000';
      return { family: `deep-nesting (${band})`, mustSucceed: false, value: new RawJson(text) };
    });
}

/** Long strings in every string field and as keys, from 1k characters to past BODY_LIMIT. */
function longStringsBody(ctx: CaseContext): fc.Arbitrary<Body> {
  const lengths = fc.oneof(
    { weight: 20, arbitrary: fc.integer({ min: 1000, max: 20_000 }) },
    { weight: 3, arbitrary: fc.integer({ min: 20_000, max: 200_000 }) },
    { weight: 1, arbitrary: fc.integer({ min: ctx.bodyLimitBytes + 1, max: ctx.bodyLimitBytes + 100_000 }) },
  );
  return fc
    .record({
      text: longText(lengths),
      where: oneOf(['input', 'input+truncate', 'inputs', 'model', 'user', 'instruction', 'key']),
    })
    .map(({ text, where }) => {
      const value =
        where === 'input'
          ? { input: text }
          : where === 'input+truncate'
            ? { input: text, truncate: true }
            : where === 'inputs'
              ? { input: ['short', text], truncate: true }
              : where === 'key'
                ? { input: 'x', [text]: 1 }
                : { input: 'x', [where]: text };
      return { family: 'long-strings', mustSucceed: false, value };
    });
}

const MALFORMED = [
  '',
  ' ',
  '{',
  '}',
  '{"input": [1,2,',
  '{"input": "a"}}',
  '{"input": "a",}',
  "{'input': 'a'}",
  '{input: "a"}',
  '{"input": "a" /* c */}',
  '{"input": NaN}',
  '{"input": Infinity}',
  '{"input": undefined}',
  '{"input": +1}',
  '{"input": 01}',
  '{"input": .5}',
  '{"input": "\\x41"}',
  '{"input": "\\u12"}',
  '{"input": "a\nb"}',
  '{"input": "a"}{"input": "b"}',
  '\u0000\u0001\u0002',
  'null',
  'true',
  '[]',
  '[{"input":"a"}]',
  '"text"',
  '42',
  'input=hello',
  '<xml/>',
];

/** Bodies that are not JSON, almost JSON, or JSON in bytes that are not UTF-8. */
function malformedBody(ctx: CaseContext): fc.Arbitrary<Body> {
  const family = 'malformed-json';
  return fc.oneof(
    {
      weight: 4,
      arbitrary: oneOf(MALFORMED).map((text) => ({ family, mustSucceed: false, bytes: Buffer.from(text) })),
    },
    {
      // A valid body cut short or with bytes after it.
      weight: 3,
      arbitrary: fc
        .tuple(
          validBody(ctx),
          fc.double({ min: 0, max: 1, noNaN: true }),
          fc.option(fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 8 }), { nil: undefined }),
        )
        .map(([body, at, tail]) => {
          const text = toJsonText(body.value);
          const bytes = tail === undefined ? text.slice(0, Math.floor(at * text.length)) : text + tail;
          return { family, mustSucceed: false, bytes: Buffer.from(bytes) };
        }),
    },
    {
      // Bytes that are not UTF-8 inside a string, a BOM before the body, raw control bytes.
      weight: 3,
      arbitrary: fc
        .tuple(
          oneOf([
            '\xff\xfe',
            '\xc0\x80',
            '\xed\xa0\x80',
            '\xf4\x90\x80\x80',
            '\x80',
            'BOM',
            '\x00',
            '\x1b[31m',
          ]),
          fc.boolean(),
        )
        .map(([bytes, inString]) => {
          if (bytes === 'BOM')
            return {
              family,
              mustSucceed: false,
              bytes: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"input":"bom"}')]),
            };
          const raw = Buffer.from(bytes, 'latin1');
          const parts = inString ? ['{"input":"a', '"}'] : ['{"input":', '"a"}'];
          return {
            family,
            mustSucceed: false,
            bytes: Buffer.concat([Buffer.from(parts[0]), raw, Buffer.from(parts[1])]),
          };
        }),
    },
    {
      weight: 1,
      arbitrary: fc
        .uint8Array({ minLength: 1, maxLength: 200 })
        .map((bytes) => ({ family, mustSucceed: false, bytes: Buffer.from(bytes) })),
    },
  );
}

function body(ctx: CaseContext): fc.Arbitrary<Body> {
  return fc.oneof(
    { weight: 20, arbitrary: validBody(ctx) },
    { weight: 4, arbitrary: extraKeysBody(ctx) },
    { weight: 6, arbitrary: specialTokensBody() },
    { weight: 24, arbitrary: nearValidBody(ctx) },
    { weight: 18, arbitrary: hostileBody(ctx) },
    { weight: 3, arbitrary: manyKeysBody() },
    { weight: 4, arbitrary: deepNestingBody() },
    { weight: 3, arbitrary: longStringsBody(ctx) },
    { weight: 6, arbitrary: malformedBody(ctx) },
  );
}

// ---------------------------------------------------------------------------------------------------
// Transport: encodings, content types, auth, methods and paths, headers

interface Transport {
  encoding: string;
  contentType: string;
  auth: string;
  route: string;
  header: string;
}

const transport: fc.Arbitrary<Transport> = fc.record({
  encoding: fc.oneof(
    { weight: 94, arbitrary: fc.constant('identity') },
    {
      weight: 6,
      arbitrary: oneOf([
        'gzip',
        'gzip',
        'deflate',
        'br',
        'x-bogus',
        'gzip, gzip',
        'truncated-gzip',
        'mislabelled-gzip',
        'gzip-bomb',
      ]),
    },
  ),
  contentType: fc.oneof(
    { weight: 92, arbitrary: fc.constant('application/json') },
    {
      weight: 8,
      arbitrary: oneOf([
        'application/json; charset=utf-8',
        'APPLICATION/JSON; Charset="UTF-8"',
        'application/json; charset=utf-16le',
        'application/json; charset=latin1',
        'application/json; charset=bogus',
        'missing',
        'text/plain',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=x',
        'application/vnd.api+json',
        'application/json, text/html',
      ]),
    },
  ),
  auth: fc.oneof(
    { weight: 96, arbitrary: fc.constant('good') },
    {
      weight: 4,
      arbitrary: oneOf([
        'missing',
        'empty-bearer',
        'wrong-key',
        'basic',
        'lowercase-scheme',
        'key-prefix',
        'huge',
        'latin1',
      ]),
    },
  ),
  route: fc.oneof(
    { weight: 96, arbitrary: fc.constant('POST /v1/embeddings') },
    {
      weight: 4,
      arbitrary: oneOf([
        'GET /v1/embeddings',
        'PUT /v1/embeddings',
        'PATCH /v1/embeddings',
        'DELETE /v1/embeddings',
        'OPTIONS /v1/embeddings',
        'HEAD /v1/embeddings',
        'TRACE /v1/embeddings',
        'PROPFIND /v1/embeddings',
        'POST /v1/embeddings/',
        'POST /v1/embeddings?x=1&x=2',
        'POST /V1/EMBEDDINGS',
        'POST /v1//embeddings',
        'POST /v1/embeddings%00',
        'POST /%ff',
        'POST /v1/models',
        'GET /v1/models',
        'GET /v1/models/%2e%2e%2f',
        'GET /v1/models/Qwen%2FQwen3-Embedding-tiny',
        'POST /health/ready',
        'GET /health/live',
        'POST /nope',
        `GET /${'a'.repeat(4000)}`,
      ]),
    },
  ),
  header: fc.oneof(
    { weight: 94, arbitrary: fc.constant('none') },
    {
      weight: 6,
      arbitrary: oneOf([
        'request-id',
        'expect-continue',
        'accept-html',
        'accept-encoding',
        'chunked',
        'many-headers',
        'connection-close',
      ]),
    },
  ),
});

/** Compression level 1: what is tested is the decoding, and the test's own time matters. */
const FAST = { level: 1 };

function encode(bytes: Buffer, encoding: string): Buffer {
  switch (encoding) {
    case 'gzip':
      return gzipSync(bytes, FAST);
    case 'gzip, gzip':
      return gzipSync(gzipSync(bytes, FAST), FAST);
    case 'deflate':
      return deflateSync(bytes, FAST);
    case 'br':
      return brotliCompressSync(bytes, { params: { [constants.BROTLI_PARAM_QUALITY]: 1 } });
    case 'truncated-gzip': {
      const zipped = gzipSync(bytes, FAST);
      return zipped.subarray(0, Math.max(1, zipped.length - 6));
    }
    default:
      return bytes;
  }
}

const bombs = new Map<number, Buffer>();
/** A few kB of gzip that inflate past the body limit (made once). */
function gzipBomb(limit: number): Buffer {
  let bomb = bombs.get(limit);
  if (!bomb) {
    bomb = gzipSync(
      Buffer.concat([Buffer.from('{"input":"'), Buffer.alloc(limit + 1024, 0x61), Buffer.from('"}')]),
    );
    bombs.set(limit, bomb);
  }
  return bomb;
}

function authorization(kind: string, key: string): string | undefined {
  switch (kind) {
    case 'good':
      return `Bearer ${key}`;
    case 'missing':
      return undefined;
    case 'empty-bearer':
      return 'Bearer ';
    case 'wrong-key':
      return `Bearer ${key}x`;
    case 'basic':
      return `Basic ${Buffer.from(`user:${key}`).toString('base64')}`;
    case 'lowercase-scheme':
      return `bearer ${key}`;
    case 'key-prefix':
      return `Bearer ${key.slice(0, -1)}`;
    case 'huge':
      return `Bearer ${'k'.repeat(8000)}`;
    default:
      return `Bearer ${key}\u00e9`;
  }
}

function httpCase(ctx: CaseContext, b: Body, t: Transport): FuzzCase {
  const tags: string[] = [];
  let family = b.family;
  let mustSucceed = b.mustSucceed;
  const outcome = (name: string): void => {
    // A variation that may decide the answer on its own joins the case's name.
    family = `${b.family} / ${name}`;
    mustSucceed = false;
  };
  let plain = b.bytes ?? Buffer.from(toJsonText(b.value));
  // Bytes that are not UTF-8 read as U+FFFD and a leading BOM is dropped, as the server's body parser reads them.
  const jsonText = b.bytes === undefined ? plain.toString() : new TextDecoder().decode(b.bytes);

  const [method, path] = t.route.split(' ');
  if (t.route !== 'POST /v1/embeddings')
    outcome(`route: ${method} ${path.length > 60 ? `${path.slice(0, 20)}...` : path}`);

  const headers: Record<string, string> = {};
  const auth = authorization(t.auth, ctx.apiKey);
  if (auth !== undefined) headers.authorization = auth;
  if (t.auth === 'lowercase-scheme') tags.push('auth: lowercase scheme');
  else if (t.auth !== 'good') outcome(`auth: ${t.auth}`);

  if (t.contentType === 'missing') outcome('content-type: missing');
  else headers['content-type'] = t.contentType;
  if (t.contentType === 'application/json; charset=utf-16le') {
    plain = Buffer.from(plain.toString(), 'utf16le');
    outcome('content-type: charset=utf-16le');
  } else if (/^application\/json; charset=utf-8$|UTF-8/.test(t.contentType)) {
    tags.push(`content-type: ${t.contentType}`);
  } else if (t.contentType !== 'application/json') {
    outcome(`content-type: ${t.contentType}`);
  }

  let sent = encode(plain, t.encoding);
  if (t.encoding !== 'identity') {
    headers['content-encoding'] =
      t.encoding === 'truncated-gzip' || t.encoding === 'mislabelled-gzip' || t.encoding === 'gzip-bomb'
        ? 'gzip'
        : t.encoding;
    if (['gzip', 'deflate', 'br'].includes(t.encoding)) tags.push(`content-encoding: ${t.encoding}`);
    else outcome(`content-encoding: ${t.encoding}`);
    if (t.encoding === 'gzip-bomb') sent = gzipBomb(ctx.bodyLimitBytes);
  }

  let chunked = false;
  switch (t.header) {
    case 'request-id': {
      const ids = ['', 'a b', '<script>', 'x'.repeat(500), '../../', '\u00e9', 'ok-id.1:2/3+4=5@6'];
      headers['x-request-id'] = ids[sent.length % ids.length];
      tags.push('x-request-id');
      break;
    }
    case 'expect-continue':
      headers.expect = '100-continue';
      tags.push('expect: 100-continue');
      break;
    case 'accept-html':
      headers.accept = 'text/html';
      tags.push('accept: text/html');
      break;
    case 'accept-encoding':
      headers['accept-encoding'] = 'gzip, br, x-bogus;q=2';
      tags.push('accept-encoding');
      break;
    case 'chunked':
      chunked = true;
      tags.push('transfer-encoding: chunked');
      break;
    case 'many-headers':
      for (let i = 0; i < 300; i++) headers[`x-h${i}`] = String(i);
      tags.push('300 headers');
      break;
    case 'connection-close':
      headers.connection = 'close';
      tags.push('connection: close');
      break;
  }
  return { family, tags, jsonText, mustSucceed, http: { method, path, headers, body: sent, chunked } };
}

// ---------------------------------------------------------------------------------------------------
// Raw framing: bytes Node's HTTP parser reads (or refuses) before any route runs

const FRAMING = [
  'chunked (well-framed)',
  'HTTP/1.0 (well-framed)',
  'absolute-form target (well-framed)',
  'content-length not a number',
  'content-length negative',
  'content-length fractional',
  'content-length past 2^64',
  'duplicate content-length (differing)',
  'duplicate content-length (equal)',
  'content-length with transfer-encoding',
  'transfer-encoding not chunked',
  'bad chunk size',
  'truncated body, half-closed',
  'missing last chunk, half-closed',
  'bytes after the body',
  'bad request line',
  'unknown method',
  'CONNECT method',
  'HTTP/2 preface',
  'header without colon',
  'space before colon',
  'obsolete line folding',
  'NUL in header value',
  'bare LF line endings',
  'HTTP/1.1 without Host',
  'header over 16 KB',
  'expect: unknown',
] as const;

function framingCase(ctx: CaseContext): fc.Arbitrary<FuzzCase> {
  return fc
    .tuple(
      oneOf([...FRAMING]),
      validBody(ctx),
      fc.array(fc.integer({ min: 1, max: 7 }), { minLength: 8, maxLength: 8 }),
    )
    .map(([kind, valid, cuts]) => {
      const json = Buffer.from(toJsonText(valid.value));
      const auth = `Authorization: Bearer ${ctx.apiKey}\r\n`;
      const head = (
        lines: string,
        target = '/v1/embeddings',
        method = 'POST',
        version = 'HTTP/1.1',
      ): string =>
        `${method} ${target} ${version}\r\nHost: 127.0.0.1\r\n${auth}Content-Type: application/json\r\nConnection: close\r\n${lines}\r\n`;
      const withLength = (lines = ''): string => head(`Content-Length: ${json.length}\r\n${lines}`);
      let bytes: Buffer;
      let halfClose = false;
      let mustSucceed = false;
      switch (kind) {
        case 'chunked (well-framed)': {
          const chunks: Buffer[] = [Buffer.from(head('Transfer-Encoding: chunked\r\n'))];
          let at = 0;
          for (const cut of cuts) {
            if (at >= json.length) break;
            const piece = json.subarray(at, at + cut * 3);
            chunks.push(Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n'));
            at += piece.length;
          }
          const rest = json.subarray(at);
          if (rest.length > 0)
            chunks.push(Buffer.from(`${rest.length.toString(16)}\r\n`), rest, Buffer.from('\r\n'));
          chunks.push(Buffer.from('0\r\n\r\n'));
          bytes = Buffer.concat(chunks);
          mustSucceed = true;
          break;
        }
        case 'HTTP/1.0 (well-framed)':
          bytes = Buffer.concat([
            Buffer.from(head(`Content-Length: ${json.length}\r\n`, '/v1/embeddings', 'POST', 'HTTP/1.0')),
            json,
          ]);
          mustSucceed = true;
          break;
        case 'absolute-form target (well-framed)':
          bytes = Buffer.concat([
            Buffer.from(head(`Content-Length: ${json.length}\r\n`, 'http://127.0.0.1/v1/embeddings')),
            json,
          ]);
          mustSucceed = true;
          break;
        case 'content-length not a number':
          bytes = Buffer.concat([Buffer.from(head('Content-Length: abc\r\n')), json]);
          break;
        case 'content-length negative':
          bytes = Buffer.concat([Buffer.from(head('Content-Length: -1\r\n')), json]);
          break;
        case 'content-length fractional':
          bytes = Buffer.concat([Buffer.from(head(`Content-Length: ${json.length}.5\r\n`)), json]);
          break;
        case 'content-length past 2^64':
          bytes = Buffer.concat([Buffer.from(head('Content-Length: 99999999999999999999999\r\n')), json]);
          break;
        case 'duplicate content-length (differing)':
          bytes = Buffer.concat([
            Buffer.from(head(`Content-Length: ${json.length}\r\nContent-Length: ${json.length + 1}\r\n`)),
            json,
          ]);
          break;
        case 'duplicate content-length (equal)':
          bytes = Buffer.concat([
            Buffer.from(head(`Content-Length: ${json.length}\r\nContent-Length: ${json.length}\r\n`)),
            json,
          ]);
          break;
        case 'content-length with transfer-encoding':
          bytes = Buffer.concat([
            Buffer.from(head(`Content-Length: ${json.length}\r\nTransfer-Encoding: chunked\r\n`)),
            Buffer.from(`${json.length.toString(16)}\r\n`),
            json,
            Buffer.from('\r\n0\r\n\r\n'),
          ]);
          break;
        case 'transfer-encoding not chunked':
          bytes = Buffer.concat([Buffer.from(head('Transfer-Encoding: gzip\r\n')), json]);
          break;
        case 'bad chunk size':
          bytes = Buffer.concat([
            Buffer.from(head('Transfer-Encoding: chunked\r\n')),
            Buffer.from('zz\r\n'),
            json,
            Buffer.from('\r\n0\r\n\r\n'),
          ]);
          break;
        case 'truncated body, half-closed':
          bytes = Buffer.concat([Buffer.from(head(`Content-Length: ${json.length + 10}\r\n`)), json]);
          halfClose = true;
          break;
        case 'missing last chunk, half-closed':
          bytes = Buffer.concat([
            Buffer.from(head('Transfer-Encoding: chunked\r\n')),
            Buffer.from(`${json.length.toString(16)}\r\n`),
            json,
            Buffer.from('\r\n'),
          ]);
          halfClose = true;
          break;
        case 'bytes after the body':
          bytes = Buffer.concat([Buffer.from(withLength()), json, Buffer.from('GARBAGE / HTTP/1.1\r\n\r\n')]);
          break;
        case 'bad request line':
          bytes = Buffer.from(
            `POST /v1/embeddings HTTP/9.9\r\nHost: 127.0.0.1\r\n${auth}Content-Length: 0\r\n\r\n`,
          );
          break;
        case 'unknown method':
          bytes = Buffer.concat([
            Buffer.from(head(`Content-Length: ${json.length}\r\n`, '/v1/embeddings', 'FROB')),
            json,
          ]);
          break;
        case 'CONNECT method':
          bytes = Buffer.from(
            `CONNECT /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\n${auth}Connection: close\r\n\r\n`,
          );
          break;
        case 'HTTP/2 preface':
          bytes = Buffer.from(
            'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00',
            'latin1',
          );
          break;
        case 'header without colon':
          bytes = Buffer.concat([Buffer.from(withLength('X-Broken header\r\n')), json]);
          break;
        case 'space before colon':
          bytes = Buffer.concat([Buffer.from(head(`Content-Length : ${json.length}\r\n`)), json]);
          break;
        case 'obsolete line folding':
          bytes = Buffer.concat([Buffer.from(withLength('X-Folded: a\r\n  b\r\n')), json]);
          break;
        case 'NUL in header value':
          bytes = Buffer.concat([Buffer.from(withLength('X-Nul: a\x00b\r\n'), 'latin1'), json]);
          break;
        case 'bare LF line endings':
          bytes = Buffer.concat([Buffer.from(withLength().replace(/\r\n/g, '\n')), json]);
          break;
        case 'HTTP/1.1 without Host':
          bytes = Buffer.concat([Buffer.from(withLength().replace('Host: 127.0.0.1\r\n', '')), json]);
          break;
        case 'header over 16 KB':
          bytes = Buffer.concat([Buffer.from(withLength(`X-Big: ${'b'.repeat(17_000)}\r\n`)), json]);
          break;
        case 'expect: unknown':
          bytes = Buffer.concat([Buffer.from(withLength('Expect: 200-ok\r\n')), json]);
          break;
      }
      return {
        family: `framing: ${kind}`,
        tags: [],
        jsonText: json.toString(),
        mustSucceed,
        raw: { bytes, halfClose },
      };
    });
}

/** One generated request of any kind: ~95% through the HTTP client, ~5% as raw framing. */
export function fuzzCase(ctx: CaseContext): fc.Arbitrary<FuzzCase> {
  return fc.oneof(
    { weight: 95, arbitrary: fc.tuple(body(ctx), transport).map(([b, t]) => httpCase(ctx, b, t)) },
    { weight: 5, arbitrary: framingCase(ctx) },
  );
}

/** A 32-bit mix of the run's seed and a case's index (murmur3's finaliser), so neighbours differ. */
function caseSeed(seed: number, index: number): number {
  let h = (seed ^ Math.imul(index + 1, 0x9e3779b9)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) | 0;
}

/**
 * Case `index` of the stream of `seed`: made on its own (fast-check's sample with a seed derived from
 * both), so cases are made as the pool sends them and any one can be replayed alone.
 */
export function caseGenerator(ctx: CaseContext, seed: number): (index: number) => FuzzCase {
  const arbitrary = fuzzCase(ctx);
  return (index) => fc.sample(arbitrary, { seed: caseSeed(seed, index), numRuns: 1 })[0];
}

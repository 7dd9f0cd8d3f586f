import { JSON_BODY_LIMITS, jsonBodyShapeProblem, nestedDeeperThan } from './json-body-shape';

const LIMITS = { maxDepth: 3, maxFields: 4, maxContainers: 5, maxStrings: 12 };
/** Both walks: the byte loop of small bodies, and memchr from one structural byte to the next. */
const problem = (text: string) => {
  const small = jsonBodyShapeProblem(Buffer.from(text), LIMITS);
  const large = jsonBodyShapeProblem(Buffer.from(text + ' '.repeat(5_000)), LIMITS);
  expect(large).toEqual(small);
  return small;
};

describe(jsonBodyShapeProblem.name, () => {
  it.each([
    '{"input":"hello"}',
    '{"input":[[1,2],[3]]}',
    '{"a":1,"b":2,"c":3,"d":4}',
    // Brackets, colons and escaped quotes inside strings are text, not structure.
    '{"input":"[[[[[{{{{: : : : :"}',
    '{"input":"a \\"[[[[[[\\" b","x":"\\\\"}',
    '{"k\\"[[[[":"\\\\\\"{{{{{"}',
    '{"a":"[","b":"{{{{{{","c":"\\\\"}',
    // Malformed bodies within bounds are left to JSON.parse.
    '{"input":"unterminated [[[[[[',
    '{',
  ])('lets %s through', (text) => {
    expect(problem(text)).toBeUndefined();
  });

  it.each([
    ['{"a":[[[1]]]}', 'nested deeper than 3 levels'],
    ['[[[[', 'nested deeper than 3 levels'],
    ['{"a":"\\\\",' + '"b":[[[1]]]}', 'nested deeper than 3 levels'],
    ['{"a":1,"b":2,"c":3,"d":4,"e":5}', 'more than 4 object fields'],
    ['[[],[],[],[],[]]', 'more than 5 arrays and objects'],
    ['["a","b","c","d","e","f","g","h","i","j","k","l","m"]', 'more than 12 strings'],
  ])('refuses %s', (text, message) => {
    expect(problem(text)).toContain(message);
  });

  it('takes the embeddings bodies the API allows under the default limits', () => {
    const ids = JSON.stringify({ input: Array.from({ length: 2048 }, () => [1, 2, 3]), dimensions: 64 });
    expect(jsonBodyShapeProblem(Buffer.from(ids))).toBeUndefined();
    const fields = Object.fromEntries(
      Array.from({ length: JSON_BODY_LIMITS.maxFields + 1 }, (_, i) => [`k${i}`, i]),
    );
    expect(jsonBodyShapeProblem(Buffer.from(JSON.stringify(fields)))).toContain('object fields');
  });

  it('scans 16 MB of token ids in well under their parse time', () => {
    const ids = Array.from({ length: 2048 }, (_, i) =>
      Array.from({ length: 1300 }, (_, j) => (i * 7919 + j * 104729) % 151643),
    );
    const body = Buffer.from(JSON.stringify({ input: ids }));
    expect(body.length).toBeGreaterThan(14_000_000);
    let started = performance.now();
    expect(jsonBodyShapeProblem(body)).toBeUndefined();
    const scan = performance.now() - started;
    started = performance.now();
    JSON.parse(body.toString('utf8'));
    const parse = performance.now() - started;
    expect(scan).toBeLessThan(parse);
  });

  it('scans a megabyte of unknown keys in a few milliseconds', () => {
    const body = Buffer.from(
      JSON.stringify(Object.fromEntries(Array.from({ length: 100_000 }, (_, i) => [`key${i}`, i]))),
    );
    const started = performance.now();
    expect(jsonBodyShapeProblem(body)).toContain('object fields');
    expect(performance.now() - started).toBeLessThan(50);
  });
});

describe(nestedDeeperThan.name, () => {
  it('measures depth without recursion', () => {
    expect(nestedDeeperThan('x', 1)).toBe(false);
    expect(nestedDeeperThan({ a: [1, { b: [] }] }, 4)).toBe(false);
    expect(nestedDeeperThan({ a: [1, { b: [] }] }, 3)).toBe(true);
    const deep = JSON.parse('['.repeat(100_000) + ']'.repeat(100_000));
    expect(nestedDeeperThan({ x: 1, deep }, 16)).toBe(true);
  });
});

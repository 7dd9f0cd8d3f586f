import { parseStrictJson } from './strict-json';

describe(parseStrictJson.name, () => {
  it('reads a document as JSON.parse does', () => {
    const text = '{"a": 1, "b": {"a": [1, {"a": null}]}, "c": "\\"a\\": 2"}';
    expect(parseStrictJson(text)).toEqual(JSON.parse(text));
    expect(parseStrictJson('[1, "x", true]')).toEqual([1, 'x', true]);
  });

  it('refuses a key named twice in one object, naming it and where it is', () => {
    expect(() => parseStrictJson('{"hidden_size": 32, "vocab_size": 1, "hidden_size": 64}')).toThrow(
      new SyntaxError('duplicate key "hidden_size"'),
    );
    expect(() => parseStrictJson('{"rope_scaling": {"factor": 1, "factor": 2}}')).toThrow(
      'duplicate key "factor" in rope_scaling',
    );
    expect(() => parseStrictJson('{"layers": [{"a": 1}, {"a": 1, "a": 2}]}')).toThrow(
      'duplicate key "a" in layers.1',
    );
  });

  it('keeps JSON syntax: no comments, no trailing commas', () => {
    expect(() => parseStrictJson('{"a": 1,}')).toThrow(SyntaxError);
    expect(() => parseStrictJson('{"a": 1 /* c */}')).toThrow(SyntaxError);
  });
});

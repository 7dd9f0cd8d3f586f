import { embeddingInputProblem, MAX_INPUTS } from './embedding-input.validator';

describe(embeddingInputProblem.name, () => {
  it.each([
    ['a string', 'hello'],
    ['strings', ['a', 'b']],
    ['token ids', [1, 2, 3]],
    ['a long token-id input (one input, not many)', Array(5000).fill(1)],
    ['token-id lists', [[1], [2, 3]]],
    [`${MAX_INPUTS} strings`, Array(MAX_INPUTS).fill('x')],
  ])('accepts %s', (_label, input) => {
    expect(embeddingInputProblem(input)).toBeUndefined();
  });

  it.each([
    [undefined, 'input is required'],
    ['', 'input must not be an empty string'],
    [[], 'input must not be an empty array'],
    [['a', ''], 'input[1] must not be an empty string'],
    [[[1], []], 'input[1] must not be an empty array'],
    [[[1], [2, 1.5]], 'input[1][1] must be a non-negative integer token id'],
    [[3, -1], 'input[1] must be a non-negative integer token id'],
    [['a', 1], 'input must be a string, an array of strings'],
    [{ text: 'a' }, 'input must be a string, an array of strings'],
    [Array(MAX_INPUTS + 1).fill('x'), `input must have at most ${MAX_INPUTS} items, got ${MAX_INPUTS + 1}`],
  ])('rejects %j', (input, problem) => {
    expect(embeddingInputProblem(input)).toContain(problem);
  });
});

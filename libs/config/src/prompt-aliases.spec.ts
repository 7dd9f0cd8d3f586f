import { loadAppConfig } from './app-config';
import { parsePromptAliases } from './prompt-aliases';

const base = { API_KEY: 'k', MODEL_PATH: '/models/Qwen3-Embedding-4B' };

describe(parsePromptAliases.name, () => {
  const served = ['embed', 'text-embedding-3-small'];
  const sut = (value: string | undefined) => parsePromptAliases(value, served);

  it('reads a JSON object of names and instructions, in order', () => {
    expect(sut('{"docs-search": "Given a question, retrieve passages", "Org/code@v2": "Find code"}')).toEqual(
      {
        aliases: [
          { name: 'docs-search', instruction: 'Given a question, retrieve passages' },
          { name: 'Org/code@v2', instruction: 'Find code' },
        ],
      },
    );
    expect(sut('{}')).toEqual({ aliases: [] });
    expect(sut(undefined)).toEqual({ aliases: [] });
  });

  it.each([
    ['not JSON', '{docs: 1}', 'must be a JSON object such as {"docs-search": '],
    ['an array', '[["a", "b"]]', 'must be a JSON object'],
    ['a string', '"docs"', 'must be a JSON object'],
    ['a repeated name', '{"a": "x", "b": "y", "A": "z"}', 'names "A" twice (names match case-insensitively)'],
    ['an empty instruction', '{"a": "  "}', 'the instruction of "a" must be a non-empty string'],
    [
      'an instruction that is not text',
      '{"a": {"task": "x"}}',
      'the instruction of "a" must be a non-empty string',
    ],
    [
      'a long instruction',
      JSON.stringify({ a: 'x'.repeat(4097) }),
      'the instruction of "a" must be at most 4096',
    ],
    ['a name with spaces', '{"my alias": "x"}', '"my alias" is not a model name'],
    ['an empty name', '{"": "x"}', '"" is not a model name'],
    ['a :query name', '{"docs:Query": "x"}', '"docs:Query" ends with :query or :document'],
    ['a :document name', '{"docs:document": "x"}', 'ends with :query or :document'],
    ['a served name', '{"EMBED": "x"}', '"EMBED" is already a name of the served model'],
    ['a served alias', '{"text-embedding-3-small": "x"}', 'is already a name of the served model'],
  ])('refuses %s', (_what, value, problem) => {
    const result = sut(value);
    expect(result.problem).toContain(problem);
    expect(result.aliases).toEqual([]);
  });

  it('never repeats an instruction in its reason', () => {
    expect(sut('{"a": "secret task", "b": ""}').problem).not.toContain('secret');
  });
});

describe('PROMPT_ALIASES', () => {
  it('is parsed into the model config', () => {
    const sut = loadAppConfig({ ...base, PROMPT_ALIASES: '{"docs": "Find docs"}' });
    expect(sut.model.promptAliases).toEqual([{ name: 'docs', instruction: 'Find docs' }]);
    expect(loadAppConfig(base).model.promptAliases).toEqual([]);
    expect(loadAppConfig({ ...base, PROMPT_ALIASES: ' ' }).model.promptAliases).toEqual([]);
  });

  it('stops the boot naming the variable and the alias', () => {
    expect(() => loadAppConfig({ ...base, PROMPT_ALIASES: '{"Qwen3-Embedding-4B:query": "x"}' })).toThrow(
      'Invalid environment variables: PROMPT_ALIASES: "Qwen3-Embedding-4B:query" ends with :query or :document',
    );
    // The default served name is the directory's.
    expect(() => loadAppConfig({ ...base, PROMPT_ALIASES: '{"qwen3-embedding-4b": "x"}' })).toThrow(
      'PROMPT_ALIASES: "qwen3-embedding-4b" is already a name of the served model',
    );
  });
});

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidRequestError } from '@app/common';
import { DEFAULT_QUERY_TASK, PromptTemplate } from './prompt-template';

describe(PromptTemplate.name, () => {
  let dir: string;

  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'prompts-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("uses Qwen3-Embedding's default task when the model names no prompts", async () => {
    const sut = await PromptTemplate.load(dir);
    expect(sut.prefix({ inputType: 'query' })).toBe(`Instruct: ${DEFAULT_QUERY_TASK}\nQuery:`);
    expect(sut.prefix({ inputType: 'document' })).toBe('');
    expect(sut.prefix({})).toBe('');
  });

  it('reads prompts and the default prompt name from config_sentence_transformers.json', async () => {
    writeFileSync(
      join(dir, 'config_sentence_transformers.json'),
      JSON.stringify({
        prompts: { query: 'Instruct: Q\nQuery:', document: 'Doc: ' },
        default_prompt_name: 'document',
      }),
    );
    const sut = await PromptTemplate.load(dir);
    expect(sut.prefix({ inputType: 'query' })).toBe('Instruct: Q\nQuery:');
    expect(sut.prefix({})).toBe('Doc: ');
  });

  it('gives other families no query prompt by default, and reads E5-style passage prompts', () => {
    expect(PromptTemplate.of({ family: 'bert', prompts: {} }).prefix({ inputType: 'query' })).toBe('');
    const sut = PromptTemplate.of({
      family: 'xlm-roberta',
      prompts: { query: 'query: ', passage: 'passage: ' },
      defaultPromptName: 'passage',
    });
    expect(sut.prefix({ inputType: 'query' })).toBe('query: ');
    expect(sut.prefix({ inputType: 'document' })).toBe('passage: ');
    expect(sut.prefix({})).toBe('passage: ');
  });

  it('applies a default prompt of any name when the request names no input type', () => {
    const sut = PromptTemplate.of({ family: 'qwen2', prompts: { web: 'Web: ' }, defaultPromptName: 'web' });
    expect(sut.prefix({})).toBe('Web: ');
    expect(sut.prefix({ inputType: 'document' })).toBe('');
  });

  it('turns a custom instruction into a query prompt', async () => {
    const sut = await PromptTemplate.load(dir);
    expect(sut.prefix({ instruction: 'Find code' })).toBe('Instruct: Find code\nQuery:');
    expect(sut.prefix({ instruction: 'Find code', inputType: 'query' })).toBe('Instruct: Find code\nQuery:');
    expect(() => sut.prefix({ instruction: 'Find code', inputType: 'document' })).toThrow(
      InvalidRequestError,
    );
  });

  it("writes a custom instruction in the checkpoint's own instruction shape (gte-Qwen2's `Query: `)", () => {
    const gte = PromptTemplate.of({
      family: 'qwen2',
      prompts: { query: 'Instruct: Given a web search query, retrieve relevant passages\nQuery: ' },
    });
    expect(gte.prefix({ instruction: 'Find code' })).toBe('Instruct: Find code\nQuery: ');
    // A query prompt of another shape (E5's `query: `) leaves Qwen3's label.
    const e5 = PromptTemplate.of({ family: 'xlm-roberta', prompts: { query: 'query: ' } });
    expect(e5.prefix({ instruction: 'Find code' })).toBe('Instruct: Find code\nQuery:');
    const qwen3 = PromptTemplate.of({ family: 'qwen3', prompts: {} });
    expect(qwen3.prefix({ instruction: 'Find code' })).toBe('Instruct: Find code\nQuery:');
  });

  it('fails loudly on a broken config file', async () => {
    writeFileSync(join(dir, 'config_sentence_transformers.json'), '{');
    await expect(PromptTemplate.load(dir)).rejects.toThrow(
      'config_sentence_transformers.json is not valid JSON',
    );
  });
});

import { CheckpointService } from '@app/checkpoint';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GenerateCheckpointCommand } from './checkpoint.command';

describe(GenerateCheckpointCommand.name, () => {
  let work: string;
  const sut = new GenerateCheckpointCommand(new CheckpointService());

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'admin-generate-'));
  });

  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('accepts every family preset and pooling mode, and refuses others by name', () => {
    expect(sut.parsePreset('XLM-RoBERTa-tiny')).toBe('xlm-roberta-tiny');
    expect(sut.parsePreset('tiny')).toBe('tiny');
    expect(sut.parsePreset('Qwen3-Reranker-4B')).toBe('qwen3-reranker-4b');
    expect(() => sut.parsePreset('gpt2-tiny')).toThrow(/--preset must be one of tiny, .*bert-tiny/);
    expect(sut.parsePooling('CLS')).toBe('cls');
    expect(() => sut.parsePooling('max')).toThrow(/--pooling must be one of lasttoken, cls, mean/);
    expect(() => sut.parseDense('0')).toThrow(/--dense must be between 1/);
  });

  it('writes the sentence-transformers head the options ask for', async () => {
    const out = join(work, 'bert');
    jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      // commander turns --no-include-prompt / --no-normalize into includePrompt / normalize false.
      await sut.run([], {
        preset: 'bert-tiny',
        out,
        dtype: 'f32',
        pooling: 'mean',
        includePrompt: false,
        normalize: false,
        dense: 16,
      });
    } finally {
      jest.restoreAllMocks();
    }

    const pooling = JSON.parse(await readFile(join(out, '1_Pooling', 'config.json'), 'utf8'));
    expect(pooling).toMatchObject({ pooling_mode_mean_tokens: true, include_prompt: false });
    expect(JSON.parse(await readFile(join(out, '2_Dense', 'config.json'), 'utf8')).out_features).toBe(16);
    expect(existsSync(join(out, '2_Normalize'))).toBe(false);
    expect(JSON.parse(await readFile(join(out, 'config.json'), 'utf8')).torch_dtype).toBe('float32');
  });

  it('passes --seq-cls and --untied through to the reranker presets', async () => {
    const out = join(work, 'qwen3-reranker-tiny');
    jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      await sut.run([], { preset: 'qwen3-reranker-tiny', out, dtype: 'bf16', seqCls: true });
      await expect(
        sut.run([], { preset: 'tiny', out: join(work, 'refused'), dtype: 'bf16', untied: true }),
      ).rejects.toThrow(/apply to the qwen3-reranker presets only/);
    } finally {
      jest.restoreAllMocks();
    }

    const config = JSON.parse(await readFile(join(out, 'config.json'), 'utf8'));
    expect(config.architectures).toEqual(['Qwen3ForSequenceClassification']);
    expect(existsSync(join(out, 'modules.json'))).toBe(false);
  });
});

import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CheckpointExistsError, generateCheckpoint, GenerateCheckpointOptions } from './checkpoint-generator';
import { inspectCheckpoint } from './checkpoint-inspector';
import { QWEN3_PRESETS, qwen3ParameterCount } from './qwen3-architecture';
import { readSafetensorsHeader } from './safetensors';
import { MINI_ARCHITECTURE } from './testing/mini-architecture';

const sha256 = async (path: string): Promise<string> =>
  createHash('sha256')
    .update(await readFile(path))
    .digest('hex');

describe(generateCheckpoint.name, () => {
  let dir: string;
  const options = (
    out: string,
    extra: Partial<GenerateCheckpointOptions> = {},
  ): GenerateCheckpointOptions => ({
    preset: MINI_ARCHITECTURE,
    seed: 0,
    outDir: join(dir, out),
    ...extra,
  });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'checkpoint-'));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes a complete, valid Hugging Face directory', async () => {
    const sut = await generateCheckpoint(options('a'));

    expect(sut.parameters).toBe(qwen3ParameterCount(MINI_ARCHITECTURE).total);
    for (const file of [
      'config.json',
      'model.safetensors',
      'tokenizer.json',
      'tokenizer_config.json',
      'config_sentence_transformers.json',
      'modules.json',
      'sentence_bert_config.json',
      '1_Pooling/config.json',
    ]) {
      expect(existsSync(join(sut.outDir, file))).toBe(true);
    }
    const config = JSON.parse(await readFile(join(sut.outDir, 'config.json'), 'utf8'));
    expect(config).toMatchObject({
      model_type: 'qwen3',
      hidden_size: 64,
      head_dim: 16,
      torch_dtype: 'bfloat16',
    });
    const report = await inspectCheckpoint(sut.outDir);
    expect(report.issues).toEqual([]);
    expect(report.ok).toBe(true);
  });

  it('writes byte-identical weights for the same seed, pinned across machines', async () => {
    const first = await generateCheckpoint(options('a'));
    const second = await generateCheckpoint(options('b'));
    const other = await generateCheckpoint(options('c', { seed: 1 }));

    const hash = await sha256(join(first.outDir, 'model.safetensors'));
    expect(await sha256(join(second.outDir, 'model.safetensors'))).toBe(hash);
    expect(await sha256(join(other.outDir, 'model.safetensors'))).not.toBe(hash);
    expect(hash).toBe(PINNED_MINI_SHA256);
  });

  it('shards past the size limit and writes a consistent index', async () => {
    const single = await generateCheckpoint(options('single'));
    const sut = await generateCheckpoint(options('sharded', { maxShardBytes: 40_000 }));

    expect(sut.shards.length).toBeGreaterThan(2);
    expect(sut.shards[0].file).toBe(
      `model-00001-of-${String(sut.shards.length).padStart(5, '0')}.safetensors`,
    );
    const index = JSON.parse(await readFile(join(sut.outDir, 'model.safetensors.index.json'), 'utf8'));
    expect(index.metadata.total_size).toBe(sut.weightBytes);
    expect(Object.keys(index.weight_map)).toHaveLength(2 + 11 * MINI_ARCHITECTURE.numHiddenLayers);
    for (const shard of sut.shards) {
      const header = await readSafetensorsHeader(join(sut.outDir, shard.file));
      for (const tensor of header.tensors) expect(index.weight_map[tensor.name]).toBe(shard.file);
    }
    // Same seed, same tensor bytes, whatever the sharding.
    const whole = await readSafetensorsHeader(join(single.outDir, 'model.safetensors'));
    expect(sut.weightBytes).toBe(
      whole.tensors.reduce((sum, t) => sum + t.dataOffsets[1] - t.dataOffsets[0], 0),
    );
    expect((await inspectCheckpoint(sut.outDir)).issues).toEqual([]);
  });

  it('writes f32 and f16 checkpoints that inspect cleanly', async () => {
    for (const dtype of ['f32', 'f16'] as const) {
      const sut = await generateCheckpoint(options(dtype, { dtype }));
      const report = await inspectCheckpoint(sut.outDir);
      expect(report.ok).toBe(true);
      expect(report.summary.dtypes).toEqual([dtype === 'f32' ? 'F32' : 'F16']);
    }
  });

  it('refuses to overwrite without force and replaces a checkpoint with it', async () => {
    await generateCheckpoint(options('a'));

    await expect(generateCheckpoint(options('a', { seed: 1 }))).rejects.toThrow(CheckpointExistsError);
    const replaced = await generateCheckpoint(options('a', { seed: 1, force: true }));
    expect((await readSafetensorsHeader(join(replaced.outDir, 'model.safetensors'))).metadata.seed).toBe('1');
  });

  it('never deletes a directory that is not a checkpoint, even with force', async () => {
    const precious = join(dir, 'home');
    await mkdir(precious);
    await writeFile(join(precious, 'notes.txt'), 'keep me');

    await expect(generateCheckpoint(options('home', { force: true }))).rejects.toThrow(/refusing to replace/);
    expect(await readFile(join(precious, 'notes.txt'), 'utf8')).toBe('keep me');
  });

  it('knows the published shapes', () => {
    expect(qwen3ParameterCount(QWEN3_PRESETS['4b']).nonEmbedding).toBe(3_633_511_936);
  });
});

const PINNED_MINI_SHA256 = 'bccedd99f7b9f3bdf628d19ca577adfca3c5c2f37e847b021d21e07166521ab8';

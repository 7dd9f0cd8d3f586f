import { Tokenizer } from '@anush008/tokenizers';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateCheckpoint } from './checkpoint-generator';
import { formatCheckpointReport, inspectCheckpoint } from './checkpoint-inspector';
import { QWEN3_TOKENIZER_MODULE } from './embedding-tokenizer';
import { RERANKER_PRESETS, RerankerPresetName, rerankerTensorSpecs } from './model-architecture';
import { detectModelTask, QWEN3_RERANKER_YES_NO_TOKEN_IDS } from './model-task';
import { elementCount, readSafetensorsHeader } from './safetensors';

type Json = Record<string, unknown>;

// Each generation parses the 11 MB tokenizer.json and writes ~20 MB: slow on two busy CI cores.
jest.setTimeout(120_000);

const readJson = async (dir: string, file: string): Promise<Json> =>
  JSON.parse(await readFile(join(dir, file), 'utf8')) as Json;

const tensorShapes = async (dir: string): Promise<Record<string, readonly number[]>> => {
  const header = await readSafetensorsHeader(join(dir, 'model.safetensors'));
  return Object.fromEntries(header.tensors.map((tensor) => [tensor.name, tensor.shape]));
};

/** The model card's prompt suffix: it ends the sequence whose last hidden state is scored. */
const CARD_SUFFIX = '<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n';

describe('reranker presets', () => {
  let root: string;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'reranker-presets-'));
  });

  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  const generate = (out: string, flags: { untied?: boolean; seqCls?: boolean } = {}) =>
    generateCheckpoint({ preset: 'qwen3-reranker-tiny', seed: 0, outDir: join(root, out), ...flags });

  describe('qwen3-reranker-tiny (tied, as Qwen3-Reranker-0.6B/4B ship)', () => {
    let dir: string;

    beforeAll(async () => {
      dir = (await generate('qwen3-reranker-tiny')).outDir;
    });

    it('writes config.json as transformers saves Qwen3ForCausalLM', async () => {
      expect(await readJson(dir, 'config.json')).toMatchObject({
        _name_or_path: 'qwen3-reranker-tiny',
        architectures: ['Qwen3ForCausalLM'],
        model_type: 'qwen3',
        tie_word_embeddings: true,
        vocab_size: 151669,
        max_position_embeddings: 40960,
        eos_token_id: 151645,
        torch_dtype: 'bfloat16',
      });
    });

    it('saves the decoder under model. and no separate lm_head, with no sentence-transformers files', async () => {
      const shapes = await tensorShapes(dir);

      expect(shapes['model.embed_tokens.weight']).toEqual([151669, 64]);
      expect(shapes['model.layers.2.self_attn.q_norm.weight']).toEqual([16]);
      expect(shapes['model.norm.weight']).toEqual([64]);
      expect(Object.keys(shapes).filter((name) => !name.startsWith('model.'))).toEqual([]);
      for (const file of ['modules.json', 'config_sentence_transformers.json', '1_Pooling']) {
        expect(existsSync(join(dir, file))).toBe(false);
      }
    });

    it('ships the real Qwen3 tokenizer untouched: byte-level post-processing only, the prompt ids of the model card', async () => {
      const published = JSON.parse(await readFile(require.resolve(QWEN3_TOKENIZER_MODULE), 'utf8')) as Json;
      const written = await readJson(dir, 'tokenizer.json');
      const tokenizer = Tokenizer.fromFile(join(dir, 'tokenizer.json'));
      const ids = async (text: string): Promise<number[]> =>
        Array.from((await tokenizer.encode(text, null, { addSpecialTokens: true })).getIds());

      expect(written).toEqual(published);
      expect((written.post_processor as Json).type).toBe('ByteLevel');
      expect([...(await ids('yes')), ...(await ids('no'))]).toEqual([...QWEN3_RERANKER_YES_NO_TOKEN_IDS]);
      expect(await ids(CARD_SUFFIX)).toEqual([151645, 198, 151644, 77091, 198, 151667, 271, 151668, 271]);
      expect(await readJson(dir, 'tokenizer_config.json')).toMatchObject({
        eos_token: '<|im_end|>',
        pad_token: '<|endoftext|>',
        tokenizer_class: 'Qwen2Tokenizer',
      });
    });

    it('inspects clean as a yes/no reranker, and is detected as one in a directory of any name', async () => {
      const report = await inspectCheckpoint(dir);
      const renamed = join(root, 'no-hint-in-this-name');
      await cp(dir, renamed, { recursive: true });

      expect(report.issues).toEqual([]);
      expect(report.summary.task).toMatchObject({ task: 'rerank', head: 'yes-no' });
      expect(formatCheckpointReport(report)).toMatch(/^task +reranker \(yes-no head\); rerank: /m);
      await expect(detectModelTask(renamed)).resolves.toMatchObject({ task: 'rerank', head: 'yes-no' });
    });

    it('names lm_head.weight when the config unties it and the weights lack it', async () => {
      const broken = join(root, 'reranker-untied-without-lm-head');
      await cp(dir, broken, { recursive: true });
      const config = await readJson(broken, 'config.json');
      await writeFile(join(broken, 'config.json'), JSON.stringify({ ...config, tie_word_embeddings: false }));

      const report = await inspectCheckpoint(broken);

      expect(report.ok).toBe(false);
      expect(report.issues).toEqual([
        expect.objectContaining({
          severity: 'error',
          tensor: 'lm_head.weight',
          message: expect.stringMatching(/^missing tensor/),
        }),
      ]);
    });
  });

  it('--untied writes lm_head.weight and tie_word_embeddings false (as Qwen3-Reranker-8B ships)', async () => {
    const sut = await generate('qwen3-reranker-tiny-untied', { untied: true });

    expect(await readJson(sut.outDir, 'config.json')).toMatchObject({
      architectures: ['Qwen3ForCausalLM'],
      tie_word_embeddings: false,
    });
    expect((await tensorShapes(sut.outDir))['lm_head.weight']).toEqual([151669, 64]);
    const report = await inspectCheckpoint(sut.outDir);
    expect(report.issues).toEqual([]);
    expect(report.summary.task).toMatchObject({ task: 'rerank', head: 'yes-no' });
  });

  it('--seq-cls writes the converted Qwen3ForSequenceClassification: score.weight [1, hidden], one label', async () => {
    const sut = await generate('converted-classifier', { seqCls: true });

    const config = await readJson(sut.outDir, 'config.json');
    expect(config).toMatchObject({
      architectures: ['Qwen3ForSequenceClassification'],
      id2label: { '0': 'LABEL_0' },
      label2id: { LABEL_0: 0 },
      pad_token_id: 151643,
    });
    const shapes = await tensorShapes(sut.outDir);
    expect(shapes['score.weight']).toEqual([1, 64]);
    expect(shapes['lm_head.weight']).toBeUndefined();
    const report = await inspectCheckpoint(sut.outDir);
    expect(report.issues).toEqual([]);
    expect(report.summary.task).toMatchObject({ task: 'rerank', head: 'classifier' });
    expect(formatCheckpointReport(report)).toMatch(
      /^task +reranker \(classifier head\); rerank: Qwen3ForSequenceClassification/m,
    );
  });

  it('refuses reranker flags elsewhere, together, or with a sentence-transformers head', async () => {
    const out = join(root, 'refused');

    await expect(generateCheckpoint({ preset: 'tiny', seed: 0, outDir: out, untied: true })).rejects.toThrow(
      '--untied and --seq-cls apply to the qwen3-reranker presets only',
    );
    await expect(generate('refused', { untied: true, seqCls: true })).rejects.toThrow(/exclude each other/);
    await expect(
      generateCheckpoint({ preset: 'qwen3-reranker-tiny', seed: 0, outDir: out, pooling: 'mean' }),
    ).rejects.toThrow(/is a reranker: pooling, Dense and Normalize/);
    expect(existsSync(out)).toBe(false);
  });

  it('knows the published shapes (parameters as the Hub counts them)', () => {
    const total = (preset: RerankerPresetName, form: 'causal-lm' | 'seq-cls' = 'causal-lm'): number =>
      rerankerTensorSpecs(RERANKER_PRESETS[preset], form).reduce(
        (sum, spec) => sum + elementCount(spec.shape),
        0,
      );

    expect(total('qwen3-reranker-0.6b')).toBe(595_776_512);
    expect(total('qwen3-reranker-4b')).toBe(4_021_784_576);
    expect(total('qwen3-reranker-8b')).toBe(8_188_548_096);
    expect(total('qwen3-reranker-4b', 'seq-cls')).toBe(4_021_784_576 + 2560);
    expect(RERANKER_PRESETS['qwen3-reranker-8b'].tieWordEmbeddings).toBe(false);
    expect(RERANKER_PRESETS['qwen3-reranker-tiny'].maxPositionEmbeddings).toBeGreaterThanOrEqual(8192);
  });
});

import { Tokenizer } from '@anush008/tokenizers';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateCheckpoint } from './checkpoint-generator';
import { inspectCheckpoint } from './checkpoint-inspector';
import {
  FAMILY_PRESETS,
  FamilyPresetName,
  modelParameterCount,
  modelTensorSpecs,
} from './model-architecture';
import { readSafetensorsHeader } from './safetensors';

type Json = Record<string, unknown>;

// Each decoder preset parses a 2-11 MB tokenizer.json and writes 4-19 MB: slow on two busy CI cores.
jest.setTimeout(120_000);

const readJson = async (dir: string, file: string): Promise<Json> =>
  JSON.parse(await readFile(join(dir, file), 'utf8')) as Json;

/** What each tiny preset must look like to transformers, sentence-transformers and our tokenizer. */
const TINY: Array<{
  preset: FamilyPresetName;
  config: Json;
  tensors: Record<string, number[]>;
  absent: string[];
  pooling: string;
  /** Special tokens around "Hello world" and their ids. */
  specials: { first?: [string, number]; last: [string, number] };
  prompts: Json;
}> = [
  {
    preset: 'qwen2-tiny',
    config: {
      architectures: ['Qwen2Model'],
      model_type: 'qwen2',
      hidden_size: 64,
      num_key_value_heads: 2,
      vocab_size: 151646,
      use_sliding_window: false,
      rope_scaling: null,
      torch_dtype: 'bfloat16',
    },
    tensors: {
      'embed_tokens.weight': [151646, 64],
      'layers.0.self_attn.q_proj.bias': [64],
      'layers.2.self_attn.k_proj.weight': [32, 64],
      'layers.2.self_attn.v_proj.bias': [32],
      'norm.weight': [64],
    },
    absent: ['layers.0.self_attn.o_proj.bias', 'layers.0.self_attn.q_norm.weight'],
    pooling: 'pooling_mode_lasttoken',
    specials: { last: ['<|endoftext|>', 151643] },
    prompts: { query: expect.stringMatching(/^Instruct: /), document: '' },
  },
  {
    preset: 'mistral-tiny',
    config: {
      architectures: ['MistralModel'],
      model_type: 'mistral',
      sliding_window: 4096,
      head_dim: 16,
      bos_token_id: 1,
      eos_token_id: 2,
      vocab_size: 32000,
    },
    tensors: {
      'embed_tokens.weight': [32000, 64],
      'layers.1.self_attn.k_proj.weight': [32, 64],
      'layers.1.mlp.down_proj.weight': [64, 128],
    },
    absent: ['layers.0.self_attn.q_proj.bias'],
    pooling: 'pooling_mode_lasttoken',
    specials: { first: ['<s>', 1], last: ['</s>', 2] },
    prompts: { query: expect.stringMatching(/^Instruct: /), document: '' },
  },
  {
    preset: 'llama-tiny',
    config: {
      architectures: ['LlamaModel'],
      model_type: 'llama',
      rope_scaling: {
        factor: 32,
        high_freq_factor: 4,
        low_freq_factor: 1,
        original_max_position_embeddings: 8192,
        rope_type: 'llama3',
      },
      tie_word_embeddings: true,
      attention_bias: false,
      mlp_bias: false,
      bos_token_id: 128000,
      eos_token_id: 128001,
    },
    tensors: { 'embed_tokens.weight': [128256, 64], 'layers.2.self_attn.o_proj.weight': [64, 64] },
    absent: ['lm_head.weight', 'layers.0.self_attn.q_proj.bias'],
    pooling: 'pooling_mode_lasttoken',
    specials: { first: ['<|begin_of_text|>', 128000], last: ['<|end_of_text|>', 128001] },
    prompts: { query: expect.stringMatching(/^Instruct: /), document: '' },
  },
  {
    preset: 'bert-tiny',
    config: {
      architectures: ['BertModel'],
      model_type: 'bert',
      type_vocab_size: 2,
      max_position_embeddings: 512,
      pad_token_id: 0,
      hidden_act: 'gelu',
      layer_norm_eps: 1e-12,
      position_embedding_type: 'absolute',
    },
    tensors: {
      'embeddings.word_embeddings.weight': [4096, 64],
      'embeddings.position_embeddings.weight': [512, 64],
      'embeddings.token_type_embeddings.weight': [2, 64],
      'embeddings.LayerNorm.bias': [64],
      'encoder.layer.1.attention.self.query.bias': [64],
      'encoder.layer.1.attention.output.LayerNorm.weight': [64],
      'encoder.layer.1.intermediate.dense.weight': [256, 64],
      'encoder.layer.1.output.dense.weight': [64, 256],
      'pooler.dense.weight': [64, 64],
    },
    absent: ['encoder.layer.2.output.dense.weight'],
    pooling: 'pooling_mode_cls_token',
    specials: { first: ['[CLS]', 2], last: ['[SEP]', 3] },
    prompts: { query: 'Represent this sentence for searching relevant passages: ', document: '' },
  },
  {
    preset: 'xlm-roberta-tiny',
    config: {
      architectures: ['XLMRobertaModel'],
      model_type: 'xlm-roberta',
      type_vocab_size: 1,
      max_position_embeddings: 514,
      pad_token_id: 1,
      bos_token_id: 0,
      eos_token_id: 2,
      layer_norm_eps: 1e-5,
    },
    tensors: {
      'embeddings.word_embeddings.weight': [4096, 64],
      'embeddings.position_embeddings.weight': [514, 64],
      'embeddings.token_type_embeddings.weight': [1, 64],
      'encoder.layer.0.output.LayerNorm.bias': [64],
    },
    absent: [],
    pooling: 'pooling_mode_mean_tokens',
    specials: { first: ['<s>', 0], last: ['</s>', 2] },
    prompts: { query: 'query: ', document: 'passage: ' },
  },
];

describe('generated checkpoints of the other families', () => {
  let root: string;

  const generated = new Map<FamilyPresetName, Promise<string>>();
  /** The preset's checkpoint under root, written once for every test that reads it. */
  const generate = (preset: FamilyPresetName): Promise<string> => {
    if (!generated.has(preset)) {
      generated.set(
        preset,
        generateCheckpoint({ preset, seed: 0, outDir: join(root, preset) }).then((result) => result.outDir),
      );
    }
    return generated.get(preset)!;
  };

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'families-'));
  });

  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  describe.each(TINY)('$preset', (expected) => {
    let dir: string;

    beforeAll(async () => {
      dir = await generate(expected.preset);
    });

    it('writes config.json as transformers does for the family', async () => {
      const config = await readJson(dir, 'config.json');

      expect(config).toMatchObject(expected.config);
      expect(config.torch_dtype).toBe('bfloat16');
    });

    it('names and shapes every tensor as the AutoModel class saves it', async () => {
      const header = await readSafetensorsHeader(join(dir, 'model.safetensors'));
      const shapes = Object.fromEntries(header.tensors.map((tensor) => [tensor.name, tensor.shape]));

      expect(shapes).toMatchObject(expected.tensors);
      for (const name of expected.absent) expect(shapes[name]).toBeUndefined();
      expect(Object.keys(shapes).sort()).toEqual(
        modelTensorSpecs(FAMILY_PRESETS[expected.preset])
          .map((spec) => spec.name)
          .sort(),
      );
      const report = await inspectCheckpoint(dir);
      expect(report.issues).toEqual([]);
      expect(report.summary.family).toBe(expected.config.model_type);
    });

    it('is a complete sentence-transformers model with the family default pooling', async () => {
      const pooling = await readJson(dir, join('1_Pooling', 'config.json'));
      const modes = Object.entries(pooling).filter(([key, on]) => key.startsWith('pooling_mode_') && on);

      expect(modes).toEqual([[expected.pooling, true]]);
      expect(pooling).toMatchObject({ word_embedding_dimension: 64, include_prompt: true });
      expect((await readJson(dir, 'modules.json')) as unknown).toEqual([
        expect.objectContaining({ path: '', type: 'sentence_transformers.models.Transformer' }),
        expect.objectContaining({ path: '1_Pooling', type: 'sentence_transformers.models.Pooling' }),
        expect.objectContaining({ path: '2_Normalize', type: 'sentence_transformers.models.Normalize' }),
      ]);
      expect(existsSync(join(dir, '2_Normalize'))).toBe(true);
      expect((await readJson(dir, 'config_sentence_transformers.json')).prompts).toEqual(expected.prompts);
      expect((await readJson(dir, 'sentence_bert_config.json')).max_seq_length).toBeGreaterThanOrEqual(512);
      expect((await readJson(dir, 'tokenizer_config.json')).model_max_length).toBeGreaterThanOrEqual(512);
    });

    it('ships a tokenizer that the service loads, adding the family specials', async () => {
      const tokenizer = Tokenizer.fromFile(join(dir, 'tokenizer.json'));
      const encoding = await tokenizer.encode('Hello world', null, { addSpecialTokens: true });
      const ids = encoding.getIds();
      const tokens = encoding.getTokens();

      expect(ids.length).toBeGreaterThan(2);
      if (expected.specials.first) {
        expect([tokens[0], ids[0]]).toEqual(expected.specials.first);
      } else {
        expect(ids[0]).not.toBe(expected.specials.last[1]);
      }
      expect([tokens.at(-1), ids.at(-1)]).toEqual(expected.specials.last);
      // Every id has an embedding row.
      const vocabRows = ((await readJson(dir, 'config.json')).vocab_size as number) - 1;
      expect(Math.max(...ids)).toBeLessThanOrEqual(vocabRows);
      expect(tokenizer.getVocabSize(true)).toBeLessThanOrEqual(vocabRows + 1);
    });
  });

  it('writes --pooling, --no-include-prompt, --no-normalize and --dense as sentence-transformers saves them', async () => {
    const sut = await generateCheckpoint({
      preset: 'bert-tiny',
      seed: 0,
      outDir: join(root, 'bert-dense'),
      pooling: 'mean',
      includePrompt: false,
      normalize: false,
      denseOutFeatures: 24,
    });

    expect(await readJson(sut.outDir, join('1_Pooling', 'config.json'))).toMatchObject({
      pooling_mode_mean_tokens: true,
      pooling_mode_cls_token: false,
      include_prompt: false,
    });
    expect((await readJson(sut.outDir, 'modules.json')) as unknown).toEqual([
      expect.objectContaining({ idx: 0, path: '' }),
      expect.objectContaining({ idx: 1, path: '1_Pooling' }),
      { idx: 2, name: '2', path: '2_Dense', type: 'sentence_transformers.models.Dense' },
    ]);
    expect(await readJson(sut.outDir, join('2_Dense', 'config.json'))).toEqual({
      in_features: 64,
      out_features: 24,
      bias: true,
      activation_function: 'torch.nn.modules.activation.Tanh',
    });
    const dense = await readSafetensorsHeader(join(sut.outDir, '2_Dense', 'model.safetensors'));
    expect(dense.tensors.map(({ name, dtype, shape }) => ({ name, dtype, shape }))).toEqual([
      { name: 'linear.weight', dtype: 'F32', shape: [24, 64] },
      { name: 'linear.bias', dtype: 'F32', shape: [24] },
    ]);
    expect(existsSync(join(sut.outDir, '2_Normalize'))).toBe(false);
  });

  it('numbers Normalize after a Dense module', async () => {
    const sut = await generateCheckpoint({
      preset: 'xlm-roberta-tiny',
      seed: 0,
      outDir: join(root, 'xlmr-dense'),
      denseOutFeatures: 16,
    });

    const modules = (await readJson(sut.outDir, 'modules.json')) as unknown as Json[];
    expect(modules.map((module) => module.path)).toEqual(['', '1_Pooling', '2_Dense', '3_Normalize']);
    expect(existsSync(join(sut.outDir, '3_Normalize'))).toBe(true);
  });

  it('draws the same bytes for the same seed', async () => {
    const again = await generateCheckpoint({
      preset: 'bert-tiny',
      seed: 0,
      outDir: join(root, 'bert-again'),
    });
    const hash = async (dir: string): Promise<string> =>
      createHash('sha256')
        .update(await readFile(join(dir, 'model.safetensors')))
        .digest('hex');

    expect(await hash(again.outDir)).toBe(await hash(await generate('bert-tiny')));
  });

  describe('inspection of a broken family checkpoint', () => {
    const broken = async (
      preset: FamilyPresetName,
      file: string,
      edit: (json: Json) => void,
    ): Promise<string> => {
      const dir = join(root, `broken-${preset}-${file.replace(/\W/g, '')}`);
      await cp(await generate(preset), dir, { recursive: true });
      const json = await readJson(dir, file);
      edit(json);
      await writeFile(join(dir, file), JSON.stringify(json));
      return dir;
    };

    it('refuses a rope_scaling other than llama3 on llama, and any on mistral', async () => {
      const llama = await broken('llama-tiny', 'config.json', (config) => {
        config.rope_scaling = { rope_type: 'yarn', factor: 4 };
      });
      const mistral = await broken('mistral-tiny', 'config.json', (config) => {
        config.rope_scaling = { rope_type: 'llama3', factor: 4 };
      });

      for (const dir of [llama, mistral]) {
        const report = await inspectCheckpoint(dir);
        expect(report.ok).toBe(false);
        expect(report.issues).toEqual([
          expect.objectContaining({
            file: 'config.json',
            message: expect.stringMatching(/^rope_scaling .* is not supported/),
          }),
        ]);
      }
    });

    it('names a tensor of the wrong shape for the family', async () => {
      const dir = await broken('bert-tiny', 'config.json', (config) => {
        config.type_vocab_size = 3;
      });

      const report = await inspectCheckpoint(dir);

      expect(report.issues).toEqual([
        expect.objectContaining({
          severity: 'error',
          tensor: 'embeddings.token_type_embeddings.weight',
          message: 'shape [2, 64], expected [3, 64]',
        }),
      ]);
    });

    it("warns when a decoder's tokenizer does not append its EOS", async () => {
      const dir = await broken('mistral-tiny', 'tokenizer.json', (tokenizer) => {
        tokenizer.post_processor = null;
      });

      const report = await inspectCheckpoint(dir);

      expect(report.ok).toBe(true);
      expect(report.issues).toEqual([
        expect.objectContaining({
          severity: 'warning',
          file: 'tokenizer.json',
          message: expect.stringMatching(/does not append <\/s>/),
        }),
      ]);
    });
  });

  it('knows the published shapes of the realistic presets', () => {
    // Non-embedding parameters as the published checkpoints count them (tensors of their safetensors).
    expect(modelParameterCount(FAMILY_PRESETS['bert-base']).total).toBe(109_482_240);
    expect(modelParameterCount(FAMILY_PRESETS['xlm-roberta-base']).total).toBe(278_043_648);
    expect(modelParameterCount(FAMILY_PRESETS['llama-1b']).total).toBe(1_235_814_400);
    expect(modelParameterCount(FAMILY_PRESETS['mistral-7b']).total).toBe(7_110_660_096);
    expect(modelParameterCount(FAMILY_PRESETS['qwen2-1.5b']).total).toBe(1_543_268_864);
  });
});

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  MODEL_FAMILIES,
  type ModelFamily,
  readSentenceTransformersModel,
  SentenceTransformersConfigError,
} from './sentence-transformers-config';

const TRANSFORMER = { idx: 0, name: '0', path: '', type: 'sentence_transformers.models.Transformer' };
const POOLING = { idx: 1, name: '1', path: '1_Pooling', type: 'sentence_transformers.models.Pooling' };
const NORMALIZE = { idx: 9, name: '9', path: '9_Normalize', type: 'sentence_transformers.models.Normalize' };
const dense = (dir: string) => ({ idx: 2, name: dir, path: dir, type: 'sentence_transformers.models.Dense' });

const MODES = {
  cls: 'pooling_mode_cls_token',
  mean: 'pooling_mode_mean_tokens',
  lasttoken: 'pooling_mode_lasttoken',
  max: 'pooling_mode_max_tokens',
  weightedmean: 'pooling_mode_weightedmean_tokens',
  sqrt: 'pooling_mode_mean_sqrt_len_tokens',
} as const;

describe(readSentenceTransformersModel.name, () => {
  let dir: string;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'st-config-'));
    family('qwen3');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  function write(relative: string, value: unknown): void {
    mkdirSync(join(dir, relative, '..'), { recursive: true });
    writeFileSync(join(dir, relative), typeof value === 'string' ? value : JSON.stringify(value));
  }
  function family(modelType: string): void {
    write('config.json', { model_type: modelType, hidden_size: 64 });
  }
  function pooling(modes: Array<keyof typeof MODES>, extra: Record<string, unknown> = {}): void {
    const config: Record<string, unknown> = { word_embedding_dimension: 64 };
    for (const [key, name] of Object.entries(MODES)) config[name] = modes.includes(key as keyof typeof MODES);
    write('1_Pooling/config.json', { ...config, ...extra });
  }
  function denseDir(path: string, config: Record<string, unknown> = {}, weights = 'model.safetensors'): void {
    write(`${path}/config.json`, {
      in_features: 64,
      out_features: 32,
      bias: true,
      activation_function: 'torch.nn.modules.activation.Tanh',
      ...config,
    });
    write(`${path}/${weights}`, 'weights');
  }
  const read = () => readSentenceTransformersModel(dir);
  async function refusal(): Promise<string> {
    const error = await read().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(SentenceTransformersConfigError);
    return (error as Error).message;
  }

  describe('without modules.json: the family default, said so', () => {
    const defaults: Record<ModelFamily, string> = {
      qwen3: 'lasttoken',
      qwen2: 'lasttoken',
      mistral: 'lasttoken',
      llama: 'lasttoken',
      bert: 'cls',
      'xlm-roberta': 'mean',
    };
    it.each(MODEL_FAMILIES.map((name) => [name, defaults[name]]))('%s pools by %s', async (name, mode) => {
      family(name);
      const sut = await read();
      expect(sut).toMatchObject({
        family: name,
        pooling: mode,
        includePrompt: true,
        normalize: true,
        denseLayers: [],
        fromModules: false,
        prompts: {},
      });
      expect(sut.summary).toMatch(new RegExp(`^no modules.json: the ${name} default, ${mode} pooling`));
    });

    it('takes a directory without config.json for Qwen3 (the engine names the missing file)', async () => {
      rmSync(join(dir, 'config.json'));
      expect(await read()).toMatchObject({ family: 'qwen3', pooling: 'lasttoken' });
    });

    it('refuses a model_type it does not serve, naming config.json', async () => {
      family('gpt2');
      expect(await refusal()).toBe(
        `${join(dir, 'config.json')}: model_type "gpt2" is not a family this service serves (qwen3, qwen2, mistral, llama, bert, xlm-roberta)`,
      );
    });
  });

  describe('modules.json', () => {
    it.each([
      [['cls'], 'cls', true],
      [['mean'], 'mean', true],
      [['lasttoken'], 'lasttoken', true],
    ] as const)('reads pooling %j and Normalize', async (modes, mode, includePrompt) => {
      family('bert');
      write('modules.json', [TRANSFORMER, POOLING, NORMALIZE]);
      pooling([...modes]);
      const sut = await read();
      expect(sut).toMatchObject({
        pooling: mode,
        includePrompt,
        normalize: true,
        denseLayers: [],
        fromModules: true,
      });
      expect(sut.summary).toBe(`modules.json: ${mode} pooling, normalized`);
    });

    it('reads include_prompt false', async () => {
      write('modules.json', [TRANSFORMER, POOLING, NORMALIZE]);
      pooling(['mean'], { include_prompt: false });
      const sut = await read();
      expect(sut).toMatchObject({ pooling: 'mean', includePrompt: false });
      expect(sut.summary).toBe('modules.json: mean pooling without the prompt, normalized');
    });

    it('reads no Normalize as normalize false', async () => {
      write('modules.json', [TRANSFORMER, POOLING]);
      pooling(['cls']);
      const sut = await read();
      expect(sut).toMatchObject({ pooling: 'cls', normalize: false });
      expect(sut.summary).toBe('modules.json: cls pooling, not normalized');
    });

    it('passes Dense directories as absolute paths in modules.json order, with or without Normalize', async () => {
      denseDir('2_Dense');
      denseDir(
        '3_Dense',
        { in_features: 32, activation_function: 'torch.nn.modules.linear.Identity' },
        'pytorch_model.bin',
      );
      write('modules.json', [TRANSFORMER, POOLING, dense('2_Dense'), dense('3_Dense'), NORMALIZE]);
      pooling(['mean']);
      const sut = await read();
      expect(sut.denseLayers).toEqual([join(dir, '2_Dense'), join(dir, '3_Dense')]);
      expect(sut.normalize).toBe(true);
      expect(sut.summary).toBe('modules.json: mean pooling, 2 Dense layer(s), normalized');

      write('modules.json', [TRANSFORMER, POOLING, dense('2_Dense')]);
      expect(await read()).toMatchObject({ denseLayers: [join(dir, '2_Dense')], normalize: false });
    });

    it('accepts module types spelled with their module path', async () => {
      write('modules.json', [
        { ...TRANSFORMER, type: 'sentence_transformers.models.Transformer.Transformer' },
        { ...POOLING, type: 'sentence_transformers.models.Pooling.Pooling' },
      ]);
      pooling(['cls']);
      expect(await read()).toMatchObject({ pooling: 'cls' });
    });

    it('refuses an unknown module type, naming modules.json and the type', async () => {
      write('modules.json', [
        TRANSFORMER,
        POOLING,
        { idx: 2, path: '2_LayerNorm', type: 'sentence_transformers.models.LayerNorm' },
      ]);
      pooling(['cls']);
      expect(await refusal()).toBe(
        `${join(dir, 'modules.json')}: module type sentence_transformers.models.LayerNorm is not supported; this service serves Transformer, Pooling, then any Dense modules, then an optional Normalize`,
      );
    });

    it('refuses a custom module class', async () => {
      write('modules.json', [TRANSFORMER, POOLING, { idx: 2, path: 'x', type: 'my_package.Router' }]);
      pooling(['cls']);
      expect(await refusal()).toMatch(/modules.json: module type my_package.Router is not supported/);
    });

    it.each([
      ['Normalize before Dense', () => [TRANSFORMER, POOLING, NORMALIZE, dense('2_Dense')]],
      ['no Pooling', () => [TRANSFORMER, NORMALIZE]],
      ['Pooling first', () => [POOLING, TRANSFORMER]],
      ['two Pooling modules', () => [TRANSFORMER, POOLING, POOLING]],
    ])('refuses %s', async (_, modules) => {
      denseDir('2_Dense');
      pooling(['cls']);
      write('modules.json', modules());
      expect(await refusal()).toMatch(/modules.json: modules .*: this service serves Transformer, Pooling/);
    });

    it('refuses modules.json that is not a list, or not JSON', async () => {
      write('modules.json', { modules: [] });
      expect(await refusal()).toBe(`${join(dir, 'modules.json')} is not a list of modules`);
      write('modules.json', '[');
      expect(await refusal()).toMatch(new RegExp(`^${join(dir, 'modules.json')} is not valid JSON`));
    });
  });

  describe('1_Pooling/config.json', () => {
    beforeEach(() => write('modules.json', [TRANSFORMER, POOLING, NORMALIZE]));
    const file = () => join(dir, '1_Pooling', 'config.json');

    it.each([
      ['max', 'pooling_mode_max_tokens'],
      ['weightedmean', 'pooling_mode_weightedmean_tokens'],
      ['sqrt', 'pooling_mode_mean_sqrt_len_tokens'],
    ] as const)('refuses %s pooling, naming the file and the mode', async (mode, key) => {
      pooling([mode]);
      expect(await refusal()).toBe(
        `${file()}: ${key} is not supported; this service pools by cls_token, mean_tokens or lasttoken`,
      );
    });

    it('refuses several modes at once (concatenated pooling)', async () => {
      pooling(['cls', 'mean']);
      expect(await refusal()).toBe(
        `${file()}: pooling_mode_cls_token and pooling_mode_mean_tokens are both set; this service pools by one mode`,
      );
    });

    it('refuses no mode', async () => {
      pooling([]);
      expect(await refusal()).toMatch(/no pooling mode is set/);
    });

    it('refuses a missing pooling config, naming where modules.json put it', async () => {
      expect(await refusal()).toBe(`${file()} is missing (modules.json names the Pooling module there)`);
    });

    it('refuses an include_prompt that is not a boolean', async () => {
      pooling(['mean'], { include_prompt: 'no' });
      expect(await refusal()).toMatch(/include_prompt must be true or false, got "no"/);
    });
  });

  describe('Dense modules', () => {
    beforeEach(() => {
      write('modules.json', [TRANSFORMER, POOLING, dense('2_Dense'), NORMALIZE]);
      pooling(['cls']);
    });
    const file = () => join(dir, '2_Dense', 'config.json');

    it('refuses an activation the engine does not apply', async () => {
      denseDir('2_Dense', { activation_function: 'torch.nn.modules.activation.GELU' });
      expect(await refusal()).toBe(
        `${file()}: activation_function "torch.nn.modules.activation.GELU" is not supported (torch.nn.modules.linear.Identity, torch.nn.modules.activation.Tanh)`,
      );
    });

    it('refuses a Dense directory without weights or config', async () => {
      write('2_Dense/config.json', { in_features: 64, out_features: 32 });
      expect(await refusal()).toBe(`${join(dir, '2_Dense')} has no model.safetensors or pytorch_model.bin`);
      rmSync(join(dir, '2_Dense'), { recursive: true });
      expect(await refusal()).toBe(`${file()} is missing (modules.json names a Dense module there)`);
    });

    it('refuses bad feature counts', async () => {
      denseDir('2_Dense', { out_features: 0 });
      expect(await refusal()).toBe(`${file()}: out_features must be a positive whole number, got 0`);
    });
  });

  describe('config_sentence_transformers.json and sentence_bert_config.json', () => {
    it('reads every prompt and the default prompt name', async () => {
      write('config_sentence_transformers.json', {
        prompts: { query: 'query: ', passage: 'passage: ' },
        default_prompt_name: 'passage',
      });
      expect(await read()).toMatchObject({
        prompts: { query: 'query: ', passage: 'passage: ' },
        defaultPromptName: 'passage',
      });
    });

    it('takes a null default_prompt_name or prompts as none', async () => {
      write('config_sentence_transformers.json', { prompts: null, default_prompt_name: null });
      const sut = await read();
      expect(sut.prompts).toEqual({});
      expect(sut.defaultPromptName).toBeUndefined();
    });

    it('refuses a default_prompt_name that names no prompt, and a prompt that is not text', async () => {
      const file = join(dir, 'config_sentence_transformers.json');
      write('config_sentence_transformers.json', {
        prompts: { query: 'q: ' },
        default_prompt_name: 'document',
      });
      expect(await refusal()).toBe(`${file}: default_prompt_name "document" names no prompt (query)`);
      write('config_sentence_transformers.json', { prompts: { query: 1 } });
      expect(await refusal()).toBe(`${file}: prompts.query is not a string`);
    });

    it('reads max_seq_length, and none when absent or null', async () => {
      expect((await read()).maxSeqLength).toBeUndefined();
      write('sentence_bert_config.json', { max_seq_length: 512, do_lower_case: false });
      expect((await read()).maxSeqLength).toBe(512);
      write('sentence_bert_config.json', { max_seq_length: null });
      expect((await read()).maxSeqLength).toBeUndefined();
    });

    it('refuses a max_seq_length that is not a positive whole number', async () => {
      write('sentence_bert_config.json', { max_seq_length: -1 });
      expect(await refusal()).toBe(
        `${join(dir, 'sentence_bert_config.json')}: max_seq_length must be a positive whole number, got -1`,
      );
    });
  });
});

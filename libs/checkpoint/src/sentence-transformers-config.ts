import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';

/** config.json's model_type values the service serves. */
export const MODEL_FAMILIES = ['qwen3', 'qwen2', 'mistral', 'llama', 'bert', 'xlm-roberta'] as const;
export type ModelFamily = (typeof MODEL_FAMILIES)[number];

/** Sentence-transformers' pooling modes that the engine implements. */
export type SentenceTransformersPooling = 'lasttoken' | 'cls' | 'mean';

export function isDecoderFamily(family: ModelFamily): boolean {
  return family !== 'bert' && family !== 'xlm-roberta';
}

/** The pooling of a checkpoint without sentence-transformers files (docs/configuration.md). */
export function defaultPooling(family: ModelFamily): SentenceTransformersPooling {
  if (family === 'bert') return 'cls';
  if (family === 'xlm-roberta') return 'mean';
  return 'lasttoken';
}

/**
 * How the checkpoint turns token states into its embedding and what it puts in front of texts, as
 * sentence-transformers reads its files: modules.json (Transformer, Pooling, Dense*, Normalize),
 * 1_Pooling/config.json, config_sentence_transformers.json (prompts) and sentence_bert_config.json
 * (max_seq_length).
 */
export interface SentenceTransformersModel {
  family: ModelFamily;
  pooling: SentenceTransformersPooling;
  /** false: mean pooling leaves out the prompt's tokens. */
  includePrompt: boolean;
  /** A Normalize module follows (always true for the family default). */
  normalize: boolean;
  /** Absolute paths of the Dense module directories, in modules.json order. */
  denseLayers: string[];
  /** config_sentence_transformers.json's prompts by name; empty when it has none. */
  prompts: Record<string, string>;
  defaultPromptName?: string;
  /** sentence_bert_config.json's max_seq_length, when it sets one. */
  maxSeqLength?: number;
  /** Whether pooling, Dense and Normalize come from modules.json (else the family default). */
  fromModules: boolean;
  /** One line for the boot log: what was read, or which default applies. */
  summary: string;
}

const MODULE_PREFIX = 'sentence_transformers.';
const POOLING_CONFIG = 'config.json';
/** Dense activations the engine applies (sentence-transformers stores the torch class name). */
export const DENSE_ACTIVATIONS: readonly string[] = [
  'torch.nn.modules.linear.Identity',
  'torch.nn.modules.activation.Tanh',
];
const SUPPORTED_POOLING_MODES: Record<string, SentenceTransformersPooling> = {
  pooling_mode_cls_token: 'cls',
  pooling_mode_mean_tokens: 'mean',
  pooling_mode_lasttoken: 'lasttoken',
};

/** A checkpoint file this service cannot follow; the message names the file. */
export class SentenceTransformersConfigError extends Error {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(/^(is|has) /.test(message) ? `${file} ${message}` : `${file}: ${message}`);
    this.name = 'SentenceTransformersConfigError';
  }
}

/** Reads the checkpoint directory's sentence-transformers files (see SentenceTransformersModel). */
export async function readSentenceTransformersModel(directory: string): Promise<SentenceTransformersModel> {
  const dir = resolve(directory);
  const family = await readFamily(dir);
  const { prompts, defaultPromptName } = await readPrompts(dir);
  const maxSeqLength = await readMaxSeqLength(dir);
  const common = { family, prompts, defaultPromptName, maxSeqLength };

  const modules = await readJson(dir, 'modules.json');
  if (modules === undefined) {
    const pooling = defaultPooling(family);
    const eos = isDecoderFamily(family) ? ' on the appended end-of-text token' : '';
    return {
      ...common,
      pooling,
      includePrompt: true,
      normalize: true,
      denseLayers: [],
      fromModules: false,
      summary: `no modules.json: the ${family} default, ${pooling} pooling${eos}, normalized`,
    };
  }
  const head = await readModules(dir, modules);
  const dense = head.denseLayers.length > 0 ? `, ${head.denseLayers.length} Dense layer(s)` : '';
  const prompt = head.includePrompt ? '' : ' without the prompt';
  return {
    ...common,
    ...head,
    fromModules: true,
    summary: `modules.json: ${head.pooling} pooling${prompt}${dense}, ${head.normalize ? 'normalized' : 'not normalized'}`,
  };
}

async function readFamily(dir: string): Promise<ModelFamily> {
  const config = await readJson(dir, 'config.json');
  // No config.json: the engine's load names the missing file; until then this is the service's own family.
  if (config === undefined) return 'qwen3';
  const modelType = objectOf('config.json', config).model_type;
  if (modelType === undefined) return 'qwen3';
  if (typeof modelType === 'string' && (MODEL_FAMILIES as readonly string[]).includes(modelType)) {
    return modelType as ModelFamily;
  }
  throw new SentenceTransformersConfigError(
    join(dir, 'config.json'),
    `model_type ${JSON.stringify(modelType)} is not a family this service serves (${MODEL_FAMILIES.join(', ')})`,
  );
}

async function readPrompts(
  dir: string,
): Promise<Pick<SentenceTransformersModel, 'prompts' | 'defaultPromptName'>> {
  const file = 'config_sentence_transformers.json';
  const raw = await readJson(dir, file);
  if (raw === undefined) return { prompts: {} };
  const config = objectOf(join(dir, file), raw);
  const prompts: Record<string, string> = {};
  if (config.prompts !== undefined && config.prompts !== null) {
    for (const [name, value] of Object.entries(objectOf(join(dir, file), config.prompts))) {
      if (typeof value !== 'string') {
        throw new SentenceTransformersConfigError(join(dir, file), `prompts.${name} is not a string`);
      }
      prompts[name] = value;
    }
  }
  const name = config.default_prompt_name;
  if (name === undefined || name === null) return { prompts };
  if (typeof name !== 'string' || !(name in prompts)) {
    throw new SentenceTransformersConfigError(
      join(dir, file),
      `default_prompt_name ${JSON.stringify(name)} names no prompt (${Object.keys(prompts).join(', ') || 'none'})`,
    );
  }
  return { prompts, defaultPromptName: name };
}

async function readMaxSeqLength(dir: string): Promise<number | undefined> {
  const file = 'sentence_bert_config.json';
  const raw = await readJson(dir, file);
  if (raw === undefined) return undefined;
  const value = objectOf(join(dir, file), raw).max_seq_length;
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new SentenceTransformersConfigError(
      join(dir, file),
      `max_seq_length must be a positive whole number, got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

type ModelHead = Pick<SentenceTransformersModel, 'pooling' | 'includePrompt' | 'normalize' | 'denseLayers'>;

/** modules.json: Transformer, Pooling, Dense*, Normalize?, in that order; anything else is refused. */
async function readModules(dir: string, raw: unknown): Promise<ModelHead> {
  const file = join(dir, 'modules.json');
  if (!Array.isArray(raw)) {
    throw new SentenceTransformersConfigError(file, 'is not a list of modules');
  }
  const modules = raw.map((entry: unknown, index) => {
    const module = objectOf(`${file} [${index}]`, entry);
    if (typeof module.type !== 'string') {
      throw new SentenceTransformersConfigError(file, `module ${index} has no type`);
    }
    const path = typeof module.path === 'string' ? module.path : '';
    return { type: moduleKind(module.type), fullType: module.type, path };
  });
  const order = modules.map((module) => module.type).join(', ');
  const expected = 'Transformer, Pooling, then any Dense modules, then an optional Normalize';
  const unknown = modules.find(
    (module) => !['Transformer', 'Pooling', 'Dense', 'Normalize'].includes(module.type),
  );
  if (unknown) {
    throw new SentenceTransformersConfigError(
      file,
      `module type ${unknown.fullType} is not supported; this service serves ${expected}`,
    );
  }
  const shape = /^Transformer, Pooling(, Dense)*(, Normalize)?$/;
  if (!shape.test(order)) {
    throw new SentenceTransformersConfigError(file, `modules ${order}: this service serves ${expected}`);
  }
  const { pooling, includePrompt } = await readPooling(dir, modules[1].path);
  const denseLayers: string[] = [];
  for (const module of modules.filter((entry) => entry.type === 'Dense')) {
    denseLayers.push(await checkDense(dir, module.path));
  }
  const normalize = modules[modules.length - 1].type === 'Normalize';
  return { pooling, includePrompt, normalize, denseLayers };
}

/** `sentence_transformers.models.Pooling` (or a longer module path ending in Pooling) -> Pooling. */
function moduleKind(type: string): string {
  if (!type.startsWith(MODULE_PREFIX)) return type;
  return type.slice(type.lastIndexOf('.') + 1);
}

async function readPooling(dir: string, path: string): Promise<Pick<ModelHead, 'pooling' | 'includePrompt'>> {
  const relative = join(path, POOLING_CONFIG);
  const file = join(dir, relative);
  const raw = await readJson(dir, relative);
  if (raw === undefined) {
    throw new SentenceTransformersConfigError(
      file,
      'is missing (modules.json names the Pooling module there)',
    );
  }
  const config = objectOf(file, raw);
  const modes = Object.entries(config)
    .filter(([key, value]) => key.startsWith('pooling_mode_') && value === true)
    .map(([key]) => key);
  const unsupported = modes.filter((mode) => !(mode in SUPPORTED_POOLING_MODES));
  if (unsupported.length > 0) {
    throw new SentenceTransformersConfigError(
      file,
      `${unsupported.join(', ')} is not supported; this service pools by cls_token, mean_tokens or lasttoken`,
    );
  }
  if (modes.length !== 1) {
    throw new SentenceTransformersConfigError(
      file,
      modes.length === 0
        ? 'no pooling mode is set; set one of pooling_mode_cls_token, pooling_mode_mean_tokens, pooling_mode_lasttoken'
        : `${modes.join(' and ')} are both set; this service pools by one mode`,
    );
  }
  const includePrompt = config.include_prompt ?? true;
  if (typeof includePrompt !== 'boolean') {
    throw new SentenceTransformersConfigError(
      file,
      `include_prompt must be true or false, got ${JSON.stringify(includePrompt)}`,
    );
  }
  return { pooling: SUPPORTED_POOLING_MODES[modes[0]], includePrompt };
}

/** A Dense module's directory, checked for what the engine reads there; returns its absolute path. */
async function checkDense(dir: string, path: string): Promise<string> {
  const directory = join(dir, path);
  const file = join(directory, 'config.json');
  const raw = await readJson(directory, 'config.json');
  if (raw === undefined) {
    throw new SentenceTransformersConfigError(file, 'is missing (modules.json names a Dense module there)');
  }
  const config = objectOf(file, raw);
  for (const key of ['in_features', 'out_features']) {
    const value = config[key];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
      throw new SentenceTransformersConfigError(
        file,
        `${key} must be a positive whole number, got ${JSON.stringify(value)}`,
      );
    }
  }
  const activation = config.activation_function ?? DENSE_ACTIVATIONS[0];
  if (typeof activation !== 'string' || !DENSE_ACTIVATIONS.includes(activation)) {
    throw new SentenceTransformersConfigError(
      file,
      `activation_function ${JSON.stringify(activation)} is not supported (${DENSE_ACTIVATIONS.join(', ')})`,
    );
  }
  if (!['model.safetensors', 'pytorch_model.bin'].some((name) => existsSync(join(directory, name)))) {
    throw new SentenceTransformersConfigError(directory, 'has no model.safetensors or pytorch_model.bin');
  }
  return directory;
}

/** The file's JSON, or undefined when it does not exist; invalid JSON names the file. */
async function readJson(dir: string, relative: string): Promise<unknown> {
  const file = join(dir, relative);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new SentenceTransformersConfigError(file, `cannot be read: ${(error as Error).message}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new SentenceTransformersConfigError(file, `is not valid JSON: ${(error as Error).message}`);
  }
}

function objectOf(file: string, value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new SentenceTransformersConfigError(file, `expected a JSON object, got ${JSON.stringify(value)}`);
  }
  return value as Record<string, unknown>;
}

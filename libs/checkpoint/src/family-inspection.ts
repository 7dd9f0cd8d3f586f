import { architectureFromConfigJson } from './checkpoint-files';
import {
  DecoderArchitecture,
  EncoderArchitecture,
  Llama3RopeScaling,
  MODEL_FAMILIES,
  ModelArchitecture,
  ModelFamily,
} from './model-architecture';

type Json = Record<string, unknown>;

/** The family a config.json's model_type names, or undefined for one the service does not run. */
export function familyOfModelType(modelType: unknown): ModelFamily | undefined {
  return MODEL_FAMILIES.find((family) => family === modelType);
}

export interface FamilyConfigReading {
  /** Set when every field the family needs was read (problems may still hold structural ones). */
  architecture?: ModelArchitecture;
  problems: string[];
}

/**
 * Reads a non-Qwen3 family's architecture from config.json, with the checks the engine makes: each
 * problem is a sentence naming the field.
 */
export function familyArchitectureFromConfigJson(family: ModelFamily, config: Json): FamilyConfigReading {
  if (family === 'bert' || family === 'xlm-roberta') return encoderFromConfig(family, config);
  return decoderFromConfig(family, config);
}

function decoderFromConfig(family: DecoderArchitecture['family'], config: Json): FamilyConfigReading {
  const { architecture: base, problems } = architectureFromConfigJson(config);
  if (config.hidden_act !== undefined && config.hidden_act !== 'silu') {
    problems.push(`hidden_act is ${JSON.stringify(config.hidden_act)}, expected "silu"`);
  }
  const ropeScaling = readRopeScaling(family, config.rope_scaling, problems);
  const flag = (key: string): boolean => config[key] === true;
  if (family !== 'llama' && flag('mlp_bias')) problems.push(`mlp_bias is true; ${family} has no MLP biases`);
  if (family === 'mistral' && flag('attention_bias')) {
    problems.push('attention_bias is true; mistral has no attention biases');
  }
  const slidingWindow =
    family === 'mistral' && typeof config.sliding_window === 'number' ? config.sliding_window : null;
  if (family === 'qwen2' && config.use_sliding_window === true) {
    problems.push('use_sliding_window is true: sliding-window attention is not supported for qwen2');
  }
  const eos = Array.isArray(config.eos_token_id) ? config.eos_token_id[0] : config.eos_token_id;
  const architecture: DecoderArchitecture = {
    ...base,
    family,
    attentionBias: family === 'qwen2' || (family === 'llama' && flag('attention_bias')),
    mlpBias: family === 'llama' && flag('mlp_bias'),
    qkNorm: false,
    ropeScaling,
    slidingWindow,
    bosTokenId: typeof config.bos_token_id === 'number' ? config.bos_token_id : null,
    eosTokenId: typeof eos === 'number' ? eos : -1,
  };
  return { architecture, problems };
}

function readRopeScaling(family: ModelFamily, value: unknown, problems: string[]): Llama3RopeScaling | null {
  if (value === undefined || value === null) return null;
  const fields = value as Json;
  const type = fields.rope_type ?? fields.type;
  if (family !== 'llama' || type !== 'llama3' || typeof value !== 'object') {
    problems.push(
      `rope_scaling ${JSON.stringify(value)} is not supported (${family === 'llama' ? 'only rope_type "llama3"' : 'it must be null or absent'})`,
    );
    return null;
  }
  const num = (key: string): number => {
    const n = fields[key];
    if (typeof n !== 'number' || !Number.isFinite(n)) {
      problems.push(
        `rope_scaling.${key} is ${n === undefined ? 'missing' : `not a number (${JSON.stringify(n)})`}`,
      );
      return NaN;
    }
    return n;
  };
  return {
    ropeType: 'llama3',
    factor: num('factor'),
    lowFreqFactor: num('low_freq_factor'),
    highFreqFactor: num('high_freq_factor'),
    originalMaxPositionEmbeddings: num('original_max_position_embeddings'),
  };
}

function encoderFromConfig(family: EncoderArchitecture['family'], config: Json): FamilyConfigReading {
  const problems: string[] = [];
  const int = (key: string, fallback?: number): number => {
    const value = config[key];
    if (value === undefined && fallback !== undefined) return fallback;
    if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
      problems.push(
        `${key} is ${value === undefined ? 'missing' : `not an integer (${JSON.stringify(value)})`}`,
      );
      return NaN;
    }
    return value;
  };
  const hiddenAct = config.hidden_act ?? 'gelu';
  if (hiddenAct !== 'gelu') problems.push(`hidden_act is ${JSON.stringify(hiddenAct)}, expected "gelu"`);
  const positionType = config.position_embedding_type ?? 'absolute';
  if (positionType !== 'absolute') {
    problems.push(`position_embedding_type is ${JSON.stringify(positionType)}; only "absolute" is supported`);
  }
  const eps = config.layer_norm_eps ?? 1e-12;
  if (typeof eps !== 'number' || !(eps > 0))
    problems.push(`layer_norm_eps is not a positive number (${JSON.stringify(eps)})`);
  const optionalId = (key: string): number | null =>
    typeof config[key] === 'number' ? (config[key] as number) : null;
  const architecture: EncoderArchitecture = {
    family,
    vocabSize: int('vocab_size'),
    hiddenSize: int('hidden_size'),
    numHiddenLayers: int('num_hidden_layers'),
    numAttentionHeads: int('num_attention_heads'),
    intermediateSize: int('intermediate_size'),
    maxPositionEmbeddings: int('max_position_embeddings'),
    typeVocabSize: int('type_vocab_size', 2),
    layerNormEps: typeof eps === 'number' ? eps : NaN,
    padTokenId: int('pad_token_id', family === 'xlm-roberta' ? 1 : 0),
    hiddenAct: 'gelu',
    bosTokenId: optionalId('bos_token_id'),
    eosTokenId: optionalId('eos_token_id'),
  };
  return { architecture, problems };
}

/**
 * The special tokens a family's tokenizer must add: decoders append their EOS (last-token pooling
 * reads its hidden state), BERT wraps in [CLS] … [SEP], XLM-R in <s> … </s>.
 */
export function expectedTemplateTokens(
  arch: ModelArchitecture,
  eosToken: string | undefined,
): {
  first?: string;
  last?: string;
} {
  switch (arch.family) {
    case 'bert':
      return { first: '[CLS]', last: '[SEP]' };
    case 'xlm-roberta':
      return { first: '<s>', last: '</s>' };
    default:
      return { last: eosToken };
  }
}

/** The first and last special tokens of a tokenizer.json post-processor's single-sequence template. */
export function templateEnds(processor: unknown): { first?: string; last?: string } {
  if (!processor || typeof processor !== 'object') return {};
  const fields = processor as Json;
  if (fields.type === 'Sequence' && Array.isArray(fields.processors)) {
    for (const inner of [...fields.processors].reverse()) {
      const ends = templateEnds(inner);
      if (ends.first !== undefined || ends.last !== undefined) return ends;
    }
    return {};
  }
  if (fields.type === 'RobertaProcessing' || fields.type === 'BertProcessing') {
    const cls = fields.cls as [string, number] | undefined;
    const sep = fields.sep as [string, number] | undefined;
    return { first: cls?.[0], last: sep?.[0] };
  }
  if (fields.type !== 'TemplateProcessing' || !Array.isArray(fields.single)) return {};
  const single = fields.single as Array<Record<string, { id?: string }>>;
  return { first: single[0]?.SpecialToken?.id, last: single[single.length - 1]?.SpecialToken?.id };
}

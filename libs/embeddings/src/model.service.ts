import { join } from 'node:path';
import { Logger } from '@nestjs/common';
import {
  readSentenceTransformersModel,
  type SentenceTransformersModel,
} from '@app/checkpoint/sentence-transformers-config';
import {
  detectModelTask,
  type ModelTask,
  type ModelTaskDetection,
  QWEN3_RERANKER_MAX_LENGTH,
} from '@app/checkpoint/model-task';
import { InvalidRequestError, ModelNotFoundError } from '@app/common';
import { AppConfig, PROMPT_SUFFIXES } from '@app/config';
import { EngineInfo, EnginePooling, PackedBatch } from '@app/engine/engine.port';
import { FloatArrayFormatter } from '@app/engine/float-array-formatter';
import {
  ModelHeadOptions,
  ModelLifecycle,
  modelLogContext,
  Readiness,
} from '@app/engine/model-lifecycle.service';
import { packBatch } from '@app/engine/packed-batch';
import { type InputType, PromptTemplate } from './prompt-template';
import { TokenizerService } from './tokenizer.service';

export type { ModelState, Readiness } from '@app/engine/model-lifecycle.service';
export type { ModelTask } from '@app/checkpoint/model-task';

/** Where each task's requests go, for the error that sends a client to the right one. */
const TASK_ENDPOINTS: Record<ModelTask, string> = {
  embed: 'POST /v1/embeddings',
  rerank: 'POST /v1/rerank (or POST /rerank)',
};
const TASK_NAMES: Record<ModelTask, string> = { embed: 'an embedding model', rerank: 'a reranker' };
const REQUEST_NAMES: Record<ModelTask, string> = {
  embed: 'an embeddings request',
  rerank: 'a rerank request',
};

const HF_ORGANIZATION = 'Qwen';

/** The prompt a model name binds: `<name>:query`, `<name>:document`, or a PROMPT_ALIASES entry. */
export interface PromptBinding {
  /** The name as GET /v1/models lists it (`<served id>:query`, the alias as configured). */
  name: string;
  inputType: InputType;
  /** A PROMPT_ALIASES entry's instruction; absent: the checkpoint's prompt for inputType. */
  instruction?: string;
}

/**
 * What a request's `model` names: the served model, with the prompt a prompt alias binds. The
 * embeddings and tokenize endpoints apply it when the request sends no input_type, prompt_name nor
 * instruction of its own; the rerank endpoint takes `instruction` as its Instruct.
 */
export interface ModelBinding {
  /** The served id. */
  modelId: string;
  /**
   * The `model` a response names: the served id for the model's own names (however spelled), the
   * name as the client sent it for a prompt alias (OpenAI and vLLM echo the request's model).
   */
  responseModel: string;
  inputType?: InputType;
  instruction?: string;
}

/**
 * The served model as the embeddings API sees it: its names, limits and prompts, and the tokenizer
 * and warm-up that its setup needs. The model's life on the engine (download, device layout, load,
 * readiness, disposal) is ModelLifecycle's, in libs/engine.
 */
export class ModelService {
  private readonly logger: Logger;
  private template = new PromptTemplate({ query: '', document: '' });
  private checkpoint?: SentenceTransformersModel;
  private detection?: ModelTaskDetection;
  /** Unix seconds at which the service started; reported as the model's `created`. */
  readonly created = Math.floor(Date.now() / 1000);
  readonly id: string;
  private readonly names: Map<string, string>;
  /** Prompt aliases by lowercased name. */
  private readonly promptNames: Map<string, PromptBinding>;

  constructor(
    private readonly config: AppConfig,
    private readonly lifecycle: ModelLifecycle,
    private readonly tokenizer: TokenizerService,
    private readonly formatter: FloatArrayFormatter = new FloatArrayFormatter(),
  ) {
    this.logger = new Logger(modelLogContext(ModelService.name, config));
    const [id, ...aliases] = config.model.servedNames;
    const directory = lifecycle.directoryName;
    this.id = id;
    this.names = new Map(
      [id, ...aliases, directory, `${HF_ORGANIZATION}/${directory}`].map((name) => [
        name.toLowerCase(),
        name,
      ]),
    );
    this.promptNames = promptBindings(this.id, [...this.names.values()], config.model.promptAliases);
  }

  get state(): Readiness['state'] {
    return this.lifecycle.state;
  }

  /** Every name a request may use for this model, the served id first. */
  get aliases(): string[] {
    return [...new Set([this.id, ...this.names.values()])];
  }

  get info(): EngineInfo {
    return this.lifecycle.info;
  }

  /**
   * What the model serves, embed or rerank: MODEL_TASK, else what its checkpoint says
   * (detectModelTask). Read from the checkpoint at setup; 'embed' until then.
   */
  get task(): ModelTask {
    return this.detection?.task ?? 'embed';
  }

  /** The task once setup has read the checkpoint (MODEL_TASK or detected); undefined before. */
  get detectedTask(): ModelTask | undefined {
    return this.detection?.task;
  }

  /** The 400 `model_task_mismatch` for a request of the other task, naming the right endpoint. */
  assertTask(task: ModelTask): void {
    const served = this.task;
    if (served === task) return;
    throw new InvalidRequestError(
      `The model '${this.id}' is ${TASK_NAMES[served]} (task ${served}); it cannot serve ${REQUEST_NAMES[task]}. Send its requests to ${TASK_ENDPOINTS[served]}.`,
      'model',
      'model_task_mismatch',
    );
  }

  get prompts(): PromptTemplate {
    return this.template;
  }

  /**
   * Per-input token limit: MAX_INPUT_TOKENS, never above the model's max_position_embeddings nor
   * sentence_bert_config.json's max_seq_length; for a reranker, a whole templated pair, never above
   * the model card's 8192.
   */
  get maxInputTokens(): number {
    return Math.min(
      this.config.limits.maxInputTokens,
      this.info.maxPositionEmbeddings,
      this.checkpoint?.maxSeqLength ?? Infinity,
      this.task === 'rerank' ? QWEN3_RERANKER_MAX_LENGTH : Infinity,
    );
  }

  /** How the engine pools the checkpoint's hidden states (known once the checkpoint is read). */
  get pooling(): EnginePooling | undefined {
    return this.checkpoint?.pooling;
  }

  /**
   * Whether mean pooling leaves a request's prompt out (sentence-transformers' include_prompt=false):
   * then each sequence carries its prompt's length to the engine.
   */
  get excludesPrompt(): boolean {
    return this.checkpoint?.includePrompt === false;
  }

  /**
   * Default output size: EMBEDDING_DIMENSION capped at the model's row length (the last Dense
   * layer's out_features, else the hidden size), else that length.
   */
  get defaultDimensions(): number {
    const full = this.info.outputDimension;
    return Math.min(this.config.model.embeddingDimension ?? full, full);
  }

  /**
   * The prompt aliases GET /v1/models lists: the served id's `:query` and `:document` (an embedding
   * model's; a reranker has no input types, so it lists neither, though it accepts them), then
   * PROMPT_ALIASES. (The other names' suffixed forms are accepted but not listed.)
   */
  get promptAliases(): PromptBinding[] {
    const listed =
      this.task === 'embed' ? PROMPT_SUFFIXES.map((suffix) => `${this.id}${suffix}`.toLowerCase()) : [];
    const configured = this.config.model.promptAliases.map(({ name }) => name.toLowerCase());
    return [...listed, ...configured].map((name) => this.promptNames.get(name) as PromptBinding);
  }

  /** The served id for a request's `model` (any name, prompt aliases too); null or absent means the served model. */
  resolve(requested: string | null | undefined): string {
    return this.binding(requested).modelId;
  }

  /** Whether `requested` names this model (any of its names or prompt aliases, in any case). */
  accepts(requested: string): boolean {
    const key = requested.toLowerCase();
    return this.names.has(key) || this.promptNames.has(key);
  }

  /** What a request's `model` names, with the prompt of a prompt alias; unknown names are 404. */
  binding(requested: string | null | undefined): ModelBinding {
    if (requested === undefined || requested === null || this.names.has(requested.toLowerCase())) {
      return { modelId: this.id, responseModel: this.id };
    }
    const prompt = this.promptNames.get(requested.toLowerCase());
    if (prompt) {
      const { inputType, instruction } = prompt;
      return { modelId: this.id, responseModel: requested, inputType, instruction };
    }
    throw new ModelNotFoundError(requested);
  }

  readiness(): Readiness {
    return this.lifecycle.readiness();
  }

  /** Throws the 503 that embeddings requests get while the model cannot serve. */
  assertReady(): void {
    this.lifecycle.assertReady();
  }

  /** A row as JSON text from the native formatter; undefined when there is none. */
  floatArrayJson(row: Float32Array): string | undefined {
    return this.formatter.format(row);
  }

  /** Sets the model up (ModelLifecycle.setup) with the tokenizer, prompts and warm-up. Safe to call twice. */
  load(): Promise<void> {
    return this.lifecycle.setup({
      prepare: (directory) => this.prepare(directory),
      warmUpBatch: () => this.warmUpBatch(),
    });
  }

  /**
   * Reads the checkpoint's task and sentence-transformers files, loads its tokenizer for its family and
   * its prompts; returns its pooling, normalisation and Dense layers for the engine, or a reranker's
   * score head (the last token's state, unnormalised, no Dense layers).
   */
  private async prepare(directory: string): Promise<ModelHeadOptions> {
    const detection = await detectModelTask(directory, this.config.model.task);
    const checkpoint = await readSentenceTransformersModel(directory);
    await this.tokenizer.load(join(directory, 'tokenizer.json'), {
      family: checkpoint.family,
      familyDefault: !checkpoint.fromModules,
    });
    this.template = PromptTemplate.of(checkpoint);
    this.checkpoint = checkpoint;
    this.detection = detection;
    this.logger.log(detection.reason);
    if (detection.task === 'rerank') {
      const yesNoTokenIds = detection.head === 'yes-no' ? await this.yesNoTokenIds() : undefined;
      this.logger.log(
        `${checkpoint.family} reranker, ${detection.head} head${yesNoTokenIds ? ` (yes ${yesNoTokenIds[0]}, no ${yesNoTokenIds[1]})` : ''}`,
      );
      return { pooling: 'lasttoken', normalize: false, denseLayers: [], head: detection.head, yesNoTokenIds };
    }
    const limit = checkpoint.maxSeqLength ? `, max_seq_length ${checkpoint.maxSeqLength}` : '';
    this.logger.log(`${checkpoint.family} checkpoint, ${checkpoint.summary}${limit}`);
    return {
      pooling: checkpoint.pooling,
      normalize: checkpoint.normalize,
      denseLayers: checkpoint.denseLayers,
    };
  }

  /**
   * The tokens of "yes" and "no", whose logits a 'yes-no' head compares (Qwen3: 9693 and 2152, the
   * model card's convert_tokens_to_ids): each must be a single token of this tokenizer.
   */
  private async yesNoTokenIds(): Promise<[number, number]> {
    const [yes, no] = await Promise.all([
      this.tokenizer.encodeText('yes', false),
      this.tokenizer.encodeText('no', false),
    ]);
    if (yes.length !== 1 || no.length !== 1) {
      throw new Error(
        `this tokenizer encodes "yes" as [${yes.join(', ')}] and "no" as [${no.join(', ')}]: a yes/no reranker needs each to be one token (set MODEL_TASK=embed to serve the checkpoint as an embedding model)`,
      );
    }
    return [yes[0], no[0]];
  }

  /** Readiness turns 503 (`stopping`) for good: the first thing a shutdown does. */
  markStopping(): void {
    this.lifecycle.markStopping();
  }

  /**
   * One short query and one short document, tokenized and prompted as requests are; a reranker scores
   * them as two sequences (one value each).
   */
  private async warmUpBatch(): Promise<PackedBatch> {
    const prefix = this.template.prefix({ inputType: 'query' });
    const [[query, document], promptLength] = await Promise.all([
      this.tokenizer.encode([`${prefix}warm-up`, 'warm-up']),
      this.excludesPrompt ? this.tokenizer.promptLength(prefix) : 0,
    ]);
    const dimensions = this.task === 'rerank' ? 1 : this.defaultDimensions;
    return packBatch([
      { tokens: query, dimensions, promptLength: Math.min(promptLength, query.length - 1) },
      { tokens: document, dimensions },
    ]);
  }
}

/**
 * Every name's `:query` and `:document`, and the PROMPT_ALIASES entries, by lowercased name. The
 * config checked the aliases against SERVED_MODEL_NAME; the names only this service knows (the
 * directory's, `Qwen/<directory>`) are checked here, which still stops the boot naming the variable.
 */
function promptBindings(
  id: string,
  names: string[],
  aliases: AppConfig['model']['promptAliases'],
): Map<string, PromptBinding> {
  const bindings = new Map<string, PromptBinding>();
  // The served id first, so its forms are the ones listed when two names differ only in case.
  for (const name of [id, ...names]) {
    for (const suffix of PROMPT_SUFFIXES) {
      const key = `${name}${suffix}`.toLowerCase();
      if (!bindings.has(key)) {
        bindings.set(key, {
          name: `${name}${suffix}`,
          inputType: suffix === ':query' ? 'query' : 'document',
        });
      }
    }
  }
  const plain = new Set(names.map((name) => name.toLowerCase()));
  for (const { name, instruction } of aliases) {
    const key = name.toLowerCase();
    if (plain.has(key) || bindings.has(key)) {
      throw new Error(
        `Invalid environment variables: PROMPT_ALIASES: "${name}" is already a name of the served model (the checkpoint directory's)`,
      );
    }
    bindings.set(key, { name, inputType: 'query', instruction });
  }
  return bindings;
}

import { InvalidRequestError } from '@app/common';
import {
  readSentenceTransformersModel,
  type SentenceTransformersModel,
} from '@app/checkpoint/sentence-transformers-config';

export type InputType = 'query' | 'document';

/** A request's prompt: an input type, or a custom instruction (which implies a query). */
export interface PromptChoice {
  inputType?: InputType;
  instruction?: string;
}

/** The prompt fields a request may send (POST /v1/embeddings, POST /tokenize). */
export interface PromptFields {
  input_type?: InputType;
  prompt_name?: InputType;
  instruction?: string;
}

/**
 * The prompt a request asks for: its own input_type / prompt_name / instruction when it sends any of
 * them (they beat what its model name binds), else the prompt alias's binding (none for a plain name).
 */
export function requestedPrompt(
  fields: PromptFields,
  binding: PromptChoice,
): PromptChoice & { explicit: boolean } {
  const { input_type: inputType, prompt_name: promptName, instruction } = fields;
  if (inputType && promptName && inputType !== promptName) {
    throw new InvalidRequestError('input_type and prompt_name disagree; send one of them', 'prompt_name');
  }
  if (inputType !== undefined || promptName !== undefined || instruction !== undefined) {
    return { inputType: inputType ?? promptName, instruction, explicit: true };
  }
  return { inputType: binding.inputType, instruction: binding.instruction, explicit: false };
}

/** Qwen3-Embedding's default retrieval task, used when the model directory names no query prompt. */
export const DEFAULT_QUERY_TASK =
  'Given a web search query, retrieve relevant passages that answer the query';

/** Qwen3-Embedding's instruction prompt ends `Query:`, its query following with no space. */
const QWEN3_QUERY_LABEL = 'Query:';

/**
 * A query prompt in the instruction shape (`Instruct: {task}\n` then the query label): its label, as
 * the checkpoint writes it. gte-Qwen2 and e5-mistral write `Query: `, with a space.
 */
const INSTRUCTION_SHAPE = /^Instruct: [^]*\n(Query:[ \t]*)$/;

/** `Instruct: {task}\n` and the query label (Qwen3's `Query:` unless the checkpoint writes its own). */
export function instructionPrompt(task: string, queryLabel: string = QWEN3_QUERY_LABEL): string {
  return `Instruct: ${task}\n${queryLabel}`;
}

/**
 * The text put in front of each input, from config_sentence_transformers.json's prompts: `query` for
 * queries, `document` (or `passage`, as E5 models name it) for documents. A Qwen3 checkpoint that
 * names no query prompt gets `Instruct: {task}\nQuery:` with Qwen3-Embedding's default task; other
 * families get no prompt. default_prompt_name's prompt applies when a request names no input type.
 */
export class PromptTemplate {
  /**
   * How a custom instruction's prompt ends: the label of the checkpoint's own instruction-shaped query
   * prompt, so an instruction reads as the model's own prompt does; else Qwen3's `Query:`.
   */
  private readonly queryLabel: string;

  constructor(
    readonly prompts: Readonly<Record<InputType, string>>,
    /** Applied when the request names no input type (sentence-transformers' default_prompt_name). */
    readonly defaultPrompt: string = '',
  ) {
    this.queryLabel = INSTRUCTION_SHAPE.exec(prompts.query)?.[1] ?? QWEN3_QUERY_LABEL;
  }

  /** Reads the prompts of the checkpoint directory (see readSentenceTransformersModel). */
  static async load(modelPath: string): Promise<PromptTemplate> {
    return PromptTemplate.of(await readSentenceTransformersModel(modelPath));
  }

  static of(
    model: Pick<SentenceTransformersModel, 'family' | 'prompts' | 'defaultPromptName'>,
  ): PromptTemplate {
    const { prompts, defaultPromptName } = model;
    const query = prompts.query ?? (model.family === 'qwen3' ? instructionPrompt(DEFAULT_QUERY_TASK) : '');
    const document = prompts.document ?? prompts.passage ?? '';
    return new PromptTemplate(
      { query, document },
      defaultPromptName === undefined ? '' : prompts[defaultPromptName],
    );
  }

  /** The prefix for a request; `instruction` is a custom task and implies a query. */
  prefix(options: { inputType?: InputType; instruction?: string }): string {
    if (options.instruction !== undefined) {
      if (options.inputType === 'document') {
        throw new InvalidRequestError(
          'instruction applies to queries only; drop it or set input_type to query',
          'instruction',
        );
      }
      return instructionPrompt(options.instruction, this.queryLabel);
    }
    return options.inputType ? this.prompts[options.inputType] : this.defaultPrompt;
  }
}

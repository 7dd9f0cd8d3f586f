import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidRequestError } from '@app/common';

export type InputType = 'query' | 'document';

/** Qwen3-Embedding's default retrieval task, used when the model directory names no query prompt. */
export const DEFAULT_QUERY_TASK =
  'Given a web search query, retrieve relevant passages that answer the query';

export function instructionPrompt(task: string): string {
  return `Instruct: ${task}\nQuery:`;
}

interface SentenceTransformersConfig {
  prompts?: Record<string, unknown>;
  default_prompt_name?: unknown;
}

/**
 * The text put in front of each input: queries become `Instruct: {task}\nQuery:{text}`, documents stay
 * as they are. Prompts come from `<model>/config_sentence_transformers.json` when present.
 */
export class PromptTemplate {
  constructor(
    readonly prompts: Readonly<Record<InputType, string>>,
    /** Applied when the request names no input type (sentence-transformers' default_prompt_name). */
    readonly defaultInputType?: InputType,
  ) {}

  static async load(modelPath: string): Promise<PromptTemplate> {
    const defaults = { query: instructionPrompt(DEFAULT_QUERY_TASK), document: '' };
    let raw: string;
    try {
      raw = await readFile(join(modelPath, 'config_sentence_transformers.json'), 'utf8');
    } catch {
      return new PromptTemplate(defaults);
    }
    let config: SentenceTransformersConfig;
    try {
      config = JSON.parse(raw) as SentenceTransformersConfig;
    } catch (error) {
      throw new Error(`config_sentence_transformers.json is not valid JSON: ${(error as Error).message}`);
    }
    const prompts = config.prompts ?? {};
    const pick = (name: InputType) =>
      typeof prompts[name] === 'string' ? (prompts[name] as string) : defaults[name];
    const defaultName = config.default_prompt_name;
    return new PromptTemplate(
      { query: pick('query'), document: pick('document') },
      defaultName === 'query' || defaultName === 'document' ? defaultName : undefined,
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
      return instructionPrompt(options.instruction);
    }
    const inputType = options.inputType ?? this.defaultInputType;
    return inputType ? this.prompts[inputType] : '';
  }
}

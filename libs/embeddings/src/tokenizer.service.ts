import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { Tokenizer } from '@anush008/tokenizers';
import { isDecoderFamily, type ModelFamily } from '@app/checkpoint/sentence-transformers-config';
import { DEMO_MODEL_COMMAND } from '@app/config';

export const END_OF_TEXT = '<|endoftext|>';

export interface TokenizerSetup {
  /** config.json's model_type; default 'qwen3'. */
  family?: ModelFamily;
  /**
   * The checkpoint has no modules.json: a decoder family gets its end-of-text token appended when
   * the tokenizer's post-processor does not append it (the family default pools the last token).
   */
  familyDefault?: boolean;
}

/**
 * The special tokens every sequence carries: `lead` before the text's tokens, `trail` after them.
 * Qwen3: none and `<|endoftext|>`; BERT: [CLS] and [SEP]; XLM-R: <s> and </s>; Llama 3: BOS and, as
 * embedding checkpoints set it, EOS.
 */
interface SpecialFrame {
  lead: Int32Array;
  trail: Int32Array;
}

/**
 * The checkpoint's HF tokenizer (tokenizer.json, Rust `tokenizers` off the event loop).
 *
 * Qwen3: every sequence ends with exactly one `<|endoftext|>` appended here, whatever the
 * tokenizer.json's post-processor would do: its hidden state is the embedding. Other families: the
 * tokenizer.json's own post-processor adds the special tokens (e.g. [CLS] ... [SEP]), so the ids equal
 * transformers'; a decoder also gets its end-of-text token appended when the post-processor does not
 * append it and the tokenizer_config.json says add_eos_token or the checkpoint has no modules.json.
 */
export class TokenizerService {
  private tokenizer?: Tokenizer;
  private frame: SpecialFrame = { lead: new Int32Array(0), trail: new Int32Array(0) };
  /** Whether the tokenizer's post-processor adds the special tokens (all but Qwen3). */
  private postProcess = false;
  /** Appended after what the tokenizer gives (Qwen3's `<|endoftext|>`, a decoder's EOS). */
  private suffix = new Int32Array(0);
  private eos = -1;

  /**
   * Loads `<model>/tokenizer.json` for the family; Qwen3 fails if it does not know `<|endoftext|>`.
   * Reads tokenizer_config.json (and config.json) beside it for a decoder's end-of-text token.
   */
  async load(tokenizerPath: string, setup: TokenizerSetup = {}): Promise<void> {
    // The first file read from the model directory: a missing directory is named here, with the way out.
    const directory = resolve(dirname(tokenizerPath));
    if (!existsSync(directory)) {
      throw new Error(
        `the model directory ${directory} does not exist: set MODEL_PATH (or --model-path) to a Hugging Face checkpoint directory, or create the demo model with \`${DEMO_MODEL_COMMAND}\``,
      );
    }
    let tokenizer: Tokenizer;
    try {
      tokenizer = Tokenizer.fromFile(tokenizerPath);
    } catch (error) {
      throw new Error(`cannot load the tokenizer ${tokenizerPath}: ${(error as Error).message}`);
    }
    const family = setup.family ?? 'qwen3';
    if (family === 'qwen3') {
      const eos = tokenizer.tokenToId(END_OF_TEXT);
      if (eos === null || eos === undefined) {
        throw new Error(`the tokenizer ${tokenizerPath} has no ${END_OF_TEXT} token`);
      }
      this.tokenizer = tokenizer;
      this.postProcess = false;
      this.eos = eos;
      this.suffix = Int32Array.of(eos);
      this.frame = { lead: new Int32Array(0), trail: Int32Array.of(eos) };
      return;
    }
    const frame = await probeFrame(tokenizer, tokenizerPath);
    let suffix = new Int32Array(0);
    let eos = -1;
    if (isDecoderFamily(family)) {
      const config = await tokenizerConfig(directory);
      eos = await endOfText(tokenizer, directory, config);
      const appends = frame.trail.length > 0 && frame.trail[frame.trail.length - 1] === eos;
      if (!appends && (setup.familyDefault || config.add_eos_token === true)) {
        if (eos < 0) {
          throw new Error(
            `the tokenizer ${tokenizerPath} appends no end-of-text token and neither tokenizer_config.json's eos_token nor config.json's eos_token_id names one`,
          );
        }
        suffix = Int32Array.of(eos);
        frame.trail = Int32Array.of(...frame.trail, eos);
      }
    }
    this.tokenizer = tokenizer;
    this.postProcess = true;
    this.eos = eos;
    this.suffix = suffix;
    this.frame = frame;
  }

  /** The id of the end-of-text token (151643 for Qwen3); -1 for a family that has none. */
  get eosId(): number {
    return this.eos;
  }

  /** The special tokens around every sequence: counted by prompt lengths and kept by truncation. */
  get specialTokens(): { lead: number[]; trail: number[] } {
    return { lead: Array.from(this.frame.lead), trail: Array.from(this.frame.trail) };
  }

  /**
   * Texts to token ids with the family's special tokens (Qwen3: each followed by one
   * `<|endoftext|>`). Special-token strings inside a text are recognised as those tokens, as Hugging
   * Face tokenizers do, so results match the reference.
   */
  async encode(texts: string[]): Promise<Int32Array[]> {
    if (!this.tokenizer) {
      throw new Error('the tokenizer is not loaded');
    }
    const options = { addSpecialTokens: this.postProcess };
    // One text goes alone: encodeBatch hands even one text to the Rust thread pool (rayon) from the
    // libuv worker, one thread hop more; both give the same ids.
    const encodings =
      texts.length === 1
        ? [await this.tokenizer.encode(texts[0], null, options)]
        : await this.tokenizer.encodeBatch(texts, options);
    return encodings.map((encoding) => this.withSuffix(encoding.getIds()));
  }

  /**
   * One text as Hugging Face's `tokenizer(text, add_special_tokens=...)` encodes it: the
   * post-processor's special tokens only when asked, and no end-of-text appended by this service
   * (POST /tokenize with add_special_tokens false; a reranker's template).
   */
  async encodeText(text: string, addSpecialTokens: boolean): Promise<number[]> {
    if (!this.tokenizer) {
      throw new Error('the tokenizer is not loaded');
    }
    const encoding = await this.tokenizer.encode(text, null, { addSpecialTokens });
    return encoding.getIds();
  }

  /** Token ids to text, special tokens included, as Hugging Face's `tokenizer.decode(ids)`. */
  async decode(ids: number[]): Promise<string> {
    if (!this.tokenizer) {
      throw new Error('the tokenizer is not loaded');
    }
    return this.tokenizer.decode(ids, false);
  }

  /** Ids the tokenizer knows, added tokens included (151669 for Qwen3): ids run 0..size-1. */
  get vocabularySize(): number {
    return this.tokenizer?.getVocabSize(true) ?? 0;
  }

  /**
   * Tokens at the start of `prompt + text` that belong to the prompt, as sentence-transformers counts
   * them for include_prompt=false: the prompt's own length with special tokens, less one (its final
   * special token, which the text's tokens replace).
   */
  async promptLength(prompt: string): Promise<number> {
    if (prompt === '') return 0;
    const [ids] = await this.encode([prompt]);
    return Math.max(0, ids.length - 1);
  }

  /** The token's text (e.g. `<think>` for 151667), or undefined for an id the tokenizer lacks. */
  tokenText(id: number): string | undefined {
    return this.tokenizer?.idToToken(id) ?? undefined;
  }

  /**
   * Token-id input gets the family's special tokens unless it already carries them: Qwen3's
   * `<|endoftext|>` appended unless it ends with it; BERT's [CLS] put in front unless it starts with
   * it and [SEP] appended unless it ends with it.
   */
  fromIds(ids: readonly number[]): Int32Array {
    const { lead, trail } = this.frame;
    const addLead = !startsWith(ids, lead);
    const addTrail = !endsWith(ids, trail);
    const sequence = new Int32Array((addLead ? lead.length : 0) + ids.length + (addTrail ? trail.length : 0));
    if (addLead) sequence.set(lead);
    sequence.set(ids, addLead ? lead.length : 0);
    if (addTrail) sequence.set(trail, sequence.length - trail.length);
    return sequence;
  }

  /**
   * Cuts a sequence to `maxTokens` as Hugging Face's truncation does: the text's tokens are cut, the
   * special tokens after them (Qwen3's final `<|endoftext|>`, BERT's [SEP]) are kept.
   */
  truncate(sequence: Int32Array, maxTokens: number): Int32Array {
    if (sequence.length <= maxTokens) {
      return sequence;
    }
    const trail = this.frame.trail.subarray(0, maxTokens);
    const cut = new Int32Array(maxTokens);
    cut.set(sequence.subarray(0, maxTokens - trail.length));
    cut.set(trail, maxTokens - trail.length);
    return cut;
  }

  private withSuffix(ids: readonly number[]): Int32Array {
    const sequence = new Int32Array(ids.length + this.suffix.length);
    sequence.set(ids);
    sequence.set(this.suffix, ids.length);
    return sequence;
  }
}

/**
 * The special tokens the post-processor puts around a text: a one-character text encoded with and
 * without them; its own tokens sit between the two.
 */
async function probeFrame(tokenizer: Tokenizer, path: string): Promise<SpecialFrame> {
  const [plain, framed] = await Promise.all([
    tokenizer.encode('a', null, { addSpecialTokens: false }),
    tokenizer.encode('a', null, { addSpecialTokens: true }),
  ]);
  const inner = plain.getIds();
  const ids = framed.getIds();
  for (let start = 0; start + inner.length <= ids.length; start += 1) {
    if (inner.every((id, k) => ids[start + k] === id)) {
      return {
        lead: Int32Array.from(ids.slice(0, start)),
        trail: Int32Array.from(ids.slice(start + inner.length)),
      };
    }
  }
  throw new Error(`the tokenizer ${path}'s post-processor changes a text's own tokens; it cannot be served`);
}

type TokenizerConfig = Record<string, unknown>;

async function tokenizerConfig(directory: string): Promise<TokenizerConfig> {
  return (await readJsonObject(join(directory, 'tokenizer_config.json'))) ?? {};
}

/** tokenizer_config.json's eos_token, else config.json's eos_token_id; -1 when neither names one. */
async function endOfText(tokenizer: Tokenizer, directory: string, config: TokenizerConfig): Promise<number> {
  const token = config.eos_token;
  const content =
    typeof token === 'string'
      ? token
      : typeof token === 'object' && token !== null
        ? (token as { content?: unknown }).content
        : undefined;
  if (typeof content === 'string') {
    const id = tokenizer.tokenToId(content);
    if (id !== null && id !== undefined) return id;
  }
  const modelConfig = await readJsonObject(join(directory, 'config.json'));
  const id = modelConfig?.eos_token_id;
  if (typeof id === 'number' && Number.isInteger(id)) return id;
  if (Array.isArray(id) && typeof id[0] === 'number') return id[0];
  return -1;
}

async function readJsonObject(file: string): Promise<Record<string, unknown> | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const value = JSON.parse(text) as unknown;
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch (error) {
    throw new Error(`${file} is not valid JSON: ${(error as Error).message}`);
  }
}

function startsWith(ids: readonly number[], prefix: Int32Array): boolean {
  if (ids.length < prefix.length) return false;
  return prefix.every((id, k) => ids[k] === id);
}

function endsWith(ids: readonly number[], suffix: Int32Array): boolean {
  if (ids.length < suffix.length) return false;
  const offset = ids.length - suffix.length;
  return suffix.every((id, k) => ids[offset + k] === id);
}

import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Injectable } from '@nestjs/common';
import { Tokenizer } from '@anush008/tokenizers';
import { DEMO_MODEL_COMMAND } from '@app/config';

export const END_OF_TEXT = '<|endoftext|>';

const ENCODE_OPTIONS = { addSpecialTokens: false };

/**
 * Qwen3's HF tokenizer (tokenizer.json, Rust `tokenizers` off the event loop). Every sequence ends with
 * exactly one `<|endoftext|>` appended here, whatever the tokenizer.json's post-processor would do:
 * its hidden state is the embedding.
 */
@Injectable()
export class TokenizerService {
  private tokenizer?: Tokenizer;
  private eos = -1;

  /** Loads `<model>/tokenizer.json`; fails if it does not know `<|endoftext|>`. */
  load(tokenizerPath: string): void {
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
    const eos = tokenizer.tokenToId(END_OF_TEXT);
    if (eos === null || eos === undefined) {
      throw new Error(`the tokenizer ${tokenizerPath} has no ${END_OF_TEXT} token`);
    }
    this.tokenizer = tokenizer;
    this.eos = eos;
  }

  /** The id of `<|endoftext|>` (151643 for Qwen3). */
  get eosId(): number {
    return this.eos;
  }

  /**
   * Texts to token ids, each followed by one `<|endoftext|>`. Special-token strings inside a text
   * are recognised as those tokens, as Hugging Face tokenizers do, so results match the reference.
   */
  async encode(texts: string[]): Promise<Int32Array[]> {
    if (!this.tokenizer) {
      throw new Error('the tokenizer is not loaded');
    }
    // One text goes alone: encodeBatch hands even one text to the Rust thread pool (rayon) from the
    // libuv worker, one thread hop more; both give the same ids.
    const encodings =
      texts.length === 1
        ? [await this.tokenizer.encode(texts[0], null, ENCODE_OPTIONS)]
        : await this.tokenizer.encodeBatch(texts, ENCODE_OPTIONS);
    return encodings.map((encoding) => this.terminate(encoding.getIds(), true));
  }

  /** The token's text (e.g. `<think>` for 151667), or undefined for an id the tokenizer lacks. */
  tokenText(id: number): string | undefined {
    return this.tokenizer?.idToToken(id) ?? undefined;
  }

  /** Token-id input: gets `<|endoftext|>` appended unless it already ends with it. */
  fromIds(ids: readonly number[]): Int32Array {
    return this.terminate(ids, false);
  }

  /** Cuts a sequence to `maxTokens`, keeping its final `<|endoftext|>`. */
  truncate(sequence: Int32Array, maxTokens: number): Int32Array {
    if (sequence.length <= maxTokens) {
      return sequence;
    }
    const cut = sequence.slice(0, maxTokens);
    cut[maxTokens - 1] = this.eos;
    return cut;
  }

  private terminate(ids: readonly number[], always: boolean): Int32Array {
    const append = always || ids.length === 0 || ids[ids.length - 1] !== this.eos;
    const sequence = new Int32Array(ids.length + (append ? 1 : 0));
    sequence.set(ids);
    if (append) {
      sequence[ids.length] = this.eos;
    }
    return sequence;
  }
}

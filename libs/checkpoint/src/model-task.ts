import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';

/** What a served checkpoint does: embed texts, or score query-document pairs. */
export type ModelTask = 'embed' | 'rerank';

/**
 * The engine's head for the task (the same strings as EngineHead of libs/engine, which sits above
 * this library and cannot be imported here).
 */
export type ModelTaskHead = 'embedding' | 'yes-no' | 'classifier';

export interface ModelTaskDetection {
  task: ModelTask;
  head: ModelTaskHead;
  /** One line for the boot log, e.g. "rerank: Qwen3ForSequenceClassification (score.weight)". */
  reason: string;
}

/** Qwen3-Reranker's vocabulary ids of "yes" and "no": the two logits its yes-no head compares. */
export const QWEN3_RERANKER_YES_NO_TOKEN_IDS: readonly [number, number] = [9693, 2152];

/** Tokens of one templated Qwen3-Reranker pair at most, as its model card sets max_length. */
export const QWEN3_RERANKER_MAX_LENGTH = 8192;

const RERANK_NAME = /rerank/i;

/**
 * Whether the checkpoint embeds or reranks, and with which head. `override` is the configuration's
 * MODEL_TASK (auto|embed|rerank). Automatically:
 * - architectures with a `*ForSequenceClassification`: rerank with its `score` layer (classifier);
 * - sentence-transformers files (modules.json, config_sentence_transformers.json): embed;
 * - a `Qwen3ForCausalLM` whose directory (or Hub repository) name or `_name_or_path` says rerank:
 *   rerank with the LM head's "yes" and "no" rows, as Qwen3-Reranker is published;
 * - anything else: embed.
 */
export async function detectModelTask(
  dir: string,
  override: 'auto' | 'embed' | 'rerank' = 'auto',
): Promise<ModelTaskDetection> {
  const directory = resolve(dir);
  const config = await readConfig(directory);
  const architectures = Array.isArray(config.architectures)
    ? config.architectures.filter((name): name is string => typeof name === 'string')
    : [];
  const classifier = architectures.find((name) => name.endsWith('ForSequenceClassification'));
  const named = architectures.join(', ') || 'no architectures in config.json';

  if (override === 'embed') {
    return { task: 'embed', head: 'embedding', reason: `embed: MODEL_TASK=embed (${named})` };
  }
  if (override === 'rerank') {
    return classifier
      ? {
          task: 'rerank',
          head: 'classifier',
          reason: `rerank: MODEL_TASK=rerank, ${classifier} (score.weight)`,
        }
      : {
          task: 'rerank',
          head: 'yes-no',
          reason: `rerank: MODEL_TASK=rerank, ${named} ("yes" and "no" logits)`,
        };
  }
  if (classifier) {
    return { task: 'rerank', head: 'classifier', reason: `rerank: ${classifier} (score.weight)` };
  }
  const sentenceTransformers = ['modules.json', 'config_sentence_transformers.json'].find((file) =>
    existsSync(join(directory, file)),
  );
  if (sentenceTransformers) {
    return { task: 'embed', head: 'embedding', reason: `embed: ${named} with ${sentenceTransformers}` };
  }
  if (architectures.includes('Qwen3ForCausalLM')) {
    const nameOrPath = typeof config._name_or_path === 'string' ? config._name_or_path : '';
    const names = [basename(directory), hubRepositoryName(directory), nameOrPath];
    const says = names.find((name) => name !== undefined && RERANK_NAME.test(name));
    if (says !== undefined) {
      return {
        task: 'rerank',
        head: 'yes-no',
        reason: `rerank: Qwen3ForCausalLM named ${says}, no sentence-transformers files ("yes" and "no" logits)`,
      };
    }
  }
  return { task: 'embed', head: 'embedding', reason: `embed: ${named}` };
}

/**
 * A Hub snapshot (`.../models--Qwen--Qwen3-Reranker-4B/snapshots/<commit>`) is named by a commit: its
 * repository's folder names the model.
 */
function hubRepositoryName(directory: string): string | undefined {
  const match = /(?:^|[/\\])models--([^/\\]+)[/\\]snapshots[/\\][^/\\]+$/.exec(directory);
  return match ? match[1].replace(/--/g, '/') : undefined;
}

async function readConfig(directory: string): Promise<Record<string, unknown>> {
  const file = join(directory, 'config.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return {}; // no config.json: the engine's load names the missing file
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new Error(`${file} is not valid JSON: ${(error as Error).message}`);
  }
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : {};
}

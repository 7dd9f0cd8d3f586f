import { mulberry32 } from '@app/common/seeded-random';
import { readFile, writeFile } from 'node:fs/promises';

/**
 * Bench corpora. A file is read by extension: `.jsonl` (one JSON string, or object with "text", per
 * line), `.json` (an array of strings or of such objects), anything else one text per non-empty line.
 * scripts/reference/baseline_bench.py reads the same formats, so both sides embed the same texts.
 * `builtin` is a deterministic synthetic corpus: short queries, passages and long documents.
 */
export async function loadCorpus(source: string, size = 1000): Promise<string[]> {
  if (source === 'builtin') return builtinCorpus(size);
  const content = await readFile(source, 'utf8');
  const fromItem = (item: unknown, where: string): string => {
    if (typeof item === 'string') return item;
    if (item && typeof item === 'object' && typeof (item as { text?: unknown }).text === 'string') {
      return (item as { text: string }).text;
    }
    throw new Error(`${source}: ${where} is neither a string nor an object with "text"`);
  };
  let texts: string[];
  if (source.endsWith('.jsonl')) {
    texts = content
      .split(/\r?\n/)
      .map((line, index) => ({ line, index }))
      .filter(({ line }) => line.trim() !== '')
      .map(({ line, index }) => fromItem(JSON.parse(line), `line ${index + 1}`));
  } else if (source.endsWith('.json')) {
    const parsed = JSON.parse(content) as unknown;
    if (!Array.isArray(parsed)) throw new Error(`${source}: expected a JSON array`);
    texts = parsed.map((item, index) => fromItem(item, `item ${index}`));
  } else {
    texts = content.split(/\r?\n/).filter((line) => line.trim() !== '');
  }
  texts = texts.filter((text) => text.length > 0);
  if (texts.length === 0) throw new Error(`${source}: no texts`);
  return texts;
}

export async function writeCorpus(path: string, texts: readonly string[]): Promise<void> {
  await writeFile(path, texts.map((text) => JSON.stringify({ text })).join('\n') + '\n');
}

const WORDS = (
  'the of and to in is for that on with as by it this are from at be was an or which has have not can more one ' +
  'model data system time new first used two also between other these such its their were may most only after ' +
  'use when into where while some than however during each both through over under research network language ' +
  'learning training results performance method methods approach based using large small different number high ' +
  'low energy water city river history world government company market price service user users search query ' +
  'document embedding vector retrieval server request response memory device graph token tokens batch latency ' +
  'throughput cluster replica parallel tensor layer attention weight weights function value values process ' +
  'image text code file files example information development international national university science ' +
  'people country century region population area building design software hardware computer program version'
).split(' ');

/**
 * `size` texts: 50% short queries (6-20 words), 35% passages (60-200 words), 15% long documents
 * (400-900 words) — roughly the mix of a retrieval workload that embeds queries and chunks.
 */
export function builtinCorpus(size = 1000, seed = 42): string[] {
  const random = mulberry32(seed);
  const between = (low: number, high: number): number => low + Math.floor(random() * (high - low + 1));
  const texts: string[] = [];
  for (let i = 0; i < size; i++) {
    const kind = random();
    const length = kind < 0.5 ? between(6, 20) : kind < 0.85 ? between(60, 200) : between(400, 900);
    const words: string[] = [];
    for (let w = 0; w < length; w++) words.push(WORDS[Math.floor(random() * WORDS.length)]);
    let text = words.join(' ');
    text = text.charAt(0).toUpperCase() + text.slice(1) + (kind < 0.5 ? '?' : '.');
    texts.push(text);
  }
  return texts;
}

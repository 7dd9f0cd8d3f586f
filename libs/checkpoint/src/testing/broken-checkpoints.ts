import { cp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readSafetensorsHeader, readTensorBytes, TensorSpec, writeSafetensorsFile } from '../safetensors';
import { generateCheckpoint } from '../checkpoint-generator';
import { SHARD_INDEX_FILE_NAME } from '../shard-plan';
import { readTorchBinTensors, writeTorchBin } from '../torch-bin';
import { MINI_ARCHITECTURE } from './mini-architecture';

type StoredTensor = TensorSpec & { data: Uint8Array };

/** Shards of the `sharded` source: MINI_ARCHITECTURE cut at 40 kB. */
const SHARD_BYTES = 40_000;
const SHARDED_FILES = 6;
const shard = (n: number): string =>
  `model-${String(n).padStart(5, '0')}-of-${String(SHARDED_FILES).padStart(5, '0')}.safetensors`;
const binShard = (n: number): string => `pytorch_${shard(n).replace(/\.safetensors$/, '.bin')}`;

/**
 * One way a checkpoint directory can be broken, and what each validator must say about it: the
 * TypeScript inspector (`model inspect`, libs/checkpoint) and the C++ loader behind the addon's
 * `load()`. One table for both, so the two cannot drift apart: a spec runs every case through each.
 */
export interface BrokenCheckpointCase {
  name: string;
  /**
   * The checkpoint it starts from: one file, or sharded with an index (SHARDED_FILES); `bin`,
   * `bin-sharded`: the same as pytorch_model.bin (torch.save's zip format).
   */
  from: 'single' | 'sharded' | 'bin' | 'bin-sharded';
  /** Breaks the copy in `dir` (a generated MINI_ARCHITECTURE checkpoint). */
  breakIt(dir: string): Promise<void>;
  /** Both must name this file. */
  file: string;
  /** The inspector's error issue (and the tensor it names, when one; its file when not `file`). */
  inspector: { tensor?: string; message: RegExp; file?: string };
  /** The addon's MODEL_LOAD_FAILED message. */
  engine: RegExp;
}

/** Rewrites one safetensors file of a checkpoint directory through `transform` (its metadata kept). */
export async function rewriteWeights(
  dir: string,
  file: string,
  transform: (tensors: StoredTensor[]) => StoredTensor[],
): Promise<void> {
  const path = join(dir, file);
  const header = await readSafetensorsHeader(path);
  const tensors: StoredTensor[] = [];
  for (const entry of header.tensors) {
    const { bytes } = await readTensorBytes(path, entry.name);
    tensors.push({ name: entry.name, dtype: entry.dtype, shape: entry.shape, data: bytes });
  }
  await writeSafetensorsFile(path, transform(tensors), header.metadata);
}

/**
 * Rewrites one pytorch_model.bin of a checkpoint directory through `transform`; `editPickle` may
 * then alter the encoded data.pkl.
 */
export async function rewriteTorchBin(
  dir: string,
  file: string,
  transform: (tensors: StoredTensor[]) => StoredTensor[],
  editPickle?: (pickle: Buffer) => Buffer,
): Promise<void> {
  const path = join(dir, file);
  const tensors = await readTorchBinTensors(path);
  await writeTorchBin(path, transform(tensors), { editPickle });
}

async function editJson(path: string, edit: (json: Record<string, unknown>) => void): Promise<void> {
  const json = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  edit(json);
  await writeFile(path, JSON.stringify(json, null, 2));
}

export const BROKEN_CHECKPOINTS: readonly BrokenCheckpointCase[] = [
  {
    name: 'no config.json',
    from: 'single',
    breakIt: (dir) => rm(join(dir, 'config.json')),
    file: 'config.json',
    inspector: { message: /missing/ },
    engine: /missing file .*config\.json/,
  },
  {
    name: 'config.json without hidden_size',
    from: 'single',
    breakIt: (dir) =>
      editJson(join(dir, 'config.json'), (config) => {
        delete config.hidden_size;
      }),
    file: 'config.json',
    inspector: { message: /hidden_size is missing/ },
    engine: /missing "hidden_size"/,
  },
  {
    name: 'config.json with a scaled RoPE',
    from: 'single',
    breakIt: (dir) =>
      editJson(join(dir, 'config.json'), (config) => {
        config.rope_scaling = { type: 'yarn', factor: 4 };
      }),
    file: 'config.json',
    inspector: { message: /rope_scaling .* is not supported/ },
    engine: /rope_scaling is not supported/,
  },
  {
    name: 'config.json naming a key twice',
    from: 'single',
    breakIt: async (dir) => {
      const path = join(dir, 'config.json');
      const text = await readFile(path, 'utf8');
      await writeFile(path, text.replace('{', '{\n  "hidden_size": 32,'));
    },
    file: 'config.json',
    inspector: { message: /duplicate key "hidden_size"/ },
    engine: /duplicate key "hidden_size"/,
  },
  {
    name: 'no weights file',
    from: 'single',
    breakIt: (dir) => rm(join(dir, 'model.safetensors')),
    file: 'model.safetensors',
    inspector: { message: /no model\.safetensors or model\.safetensors\.index\.json/ },
    engine: /missing file .*model\.safetensors/,
  },
  {
    name: 'a missing tensor',
    from: 'single',
    breakIt: (dir) =>
      rewriteWeights(dir, 'model.safetensors', (tensors) =>
        tensors.filter((tensor) => tensor.name !== 'layers.1.self_attn.k_norm.weight'),
      ),
    file: 'model.safetensors',
    inspector: { tensor: 'layers.1.self_attn.k_norm.weight', message: /missing tensor/ },
    engine: /'layers\.1\.self_attn\.k_norm\.weight' .*is missing/,
  },
  {
    name: 'a misshaped tensor',
    from: 'single',
    breakIt: (dir) =>
      rewriteWeights(dir, 'model.safetensors', (tensors) =>
        tensors.map((tensor) =>
          tensor.name === 'layers.0.self_attn.k_proj.weight' ? { ...tensor, shape: [64, 32] } : tensor,
        ),
      ),
    file: 'model.safetensors',
    inspector: {
      tensor: 'layers.0.self_attn.k_proj.weight',
      message: /shape \[64, 32\], expected \[32, 64\]/,
    },
    engine: /'layers\.0\.self_attn\.k_proj\.weight': shape \[64, 32\] does not match \[32, 64\]/,
  },
  {
    name: 'a tensor of an unsupported dtype',
    from: 'single',
    breakIt: (dir) =>
      rewriteWeights(dir, 'model.safetensors', (tensors) =>
        tensors.map((tensor) =>
          tensor.name === 'norm.weight'
            ? { ...tensor, dtype: 'F64', data: new Uint8Array(tensor.data.length * 4) }
            : tensor,
        ),
      ),
    file: 'model.safetensors',
    inspector: { tensor: 'norm.weight', message: /dtype F64 is not supported/ },
    engine: /'norm\.weight': dtype F64 is not supported/,
  },
  {
    name: 'a truncated weights file',
    from: 'single',
    breakIt: async (dir) => {
      const path = join(dir, 'model.safetensors');
      await truncate(path, (await stat(path)).size - 100);
    },
    file: 'model.safetensors',
    inspector: { message: /truncated/ },
    engine: /model\.safetensors.*truncated/,
  },
  {
    name: 'a header longer than the file',
    from: 'single',
    breakIt: async (dir) => {
      const path = join(dir, 'model.safetensors');
      const bytes = await readFile(path);
      bytes.writeBigUInt64LE(BigInt(bytes.length), 0);
      await writeFile(path, bytes);
    },
    file: 'model.safetensors',
    inspector: { message: /header length \d+ exceeds the file/ },
    engine: /model\.safetensors: header length \d+ runs past the end/,
  },
  {
    name: 'a shard the index lists but the directory lacks',
    from: 'sharded',
    breakIt: (dir) => rm(join(dir, shard(2))),
    file: shard(2),
    inspector: { message: /missing/ },
    engine: /model-00002-of-00006\.safetensors/,
  },
  {
    name: 'an index naming a tensor no shard holds',
    from: 'sharded',
    breakIt: (dir) =>
      editJson(join(dir, SHARD_INDEX_FILE_NAME), (index) => {
        (index.weight_map as Record<string, string>)['layers.9.mlp.up_proj.weight'] = shard(1);
      }),
    file: shard(1),
    inspector: {
      file: SHARD_INDEX_FILE_NAME,
      tensor: 'layers.9.mlp.up_proj.weight',
      message: /lists it in model-00001-of-00006\.safetensors, which does not contain it/,
    },
    engine: /layers\.9\.mlp\.up_proj\.weight/,
  },
  {
    name: 'a truncated pytorch_model.bin',
    from: 'bin',
    breakIt: async (dir) => {
      const path = join(dir, 'pytorch_model.bin');
      await truncate(path, (await stat(path)).size - 100);
    },
    file: 'pytorch_model.bin',
    inspector: { message: /truncated or corrupt zip archive/ },
    engine: /pytorch_model\.bin: truncated or corrupt zip archive/,
  },
  {
    name: 'a pytorch_model.bin whose pickle names a forbidden global',
    from: 'bin',
    breakIt: (dir) =>
      rewriteTorchBin(
        dir,
        'pytorch_model.bin',
        (tensors) => tensors,
        (pickle) =>
          Buffer.from(
            pickle.toString('latin1').replace('ctorch._utils\n_rebuild_tensor_v2\n', 'cos\nsystem\n'),
            'latin1',
          ),
      ),
    file: 'pytorch_model.bin',
    inspector: { message: /data\.pkl: refuses the global os\.system/ },
    engine: /pytorch_model\.bin: data\.pkl: refuses the global os\.system/,
  },
  {
    name: 'a pytorch_model.bin holding a value that is not a tensor',
    from: 'bin',
    breakIt: (dir) =>
      rewriteTorchBin(
        dir,
        'pytorch_model.bin',
        (tensors) => tensors,
        // {..., 'step': 5}: one more SETITEM before STOP
        (pickle) =>
          Buffer.concat([
            pickle.subarray(0, -1),
            Buffer.from('X\x04\x00\x00\x00stepK\x05s', 'latin1'),
            pickle.subarray(-1),
          ]),
      ),
    file: 'pytorch_model.bin',
    inspector: { tensor: 'step', message: /value is a number, not a tensor/ },
    engine: /pytorch_model\.bin: tensor 'step': value is an int, not a tensor/,
  },
  {
    name: 'a misshaped tensor in pytorch_model.bin',
    from: 'bin',
    breakIt: (dir) =>
      rewriteTorchBin(dir, 'pytorch_model.bin', (tensors) =>
        tensors.map((tensor) =>
          tensor.name === 'layers.0.self_attn.k_proj.weight' ? { ...tensor, shape: [64, 32] } : tensor,
        ),
      ),
    file: 'pytorch_model.bin',
    inspector: {
      tensor: 'layers.0.self_attn.k_proj.weight',
      message: /shape \[64, 32\], expected \[32, 64\]/,
    },
    engine: /'layers\.0\.self_attn\.k_proj\.weight': shape \[64, 32\] does not match \[32, 64\]/,
  },
  {
    name: 'a .bin shard the index lists but the directory lacks',
    from: 'bin-sharded',
    breakIt: (dir) => rm(join(dir, binShard(2))),
    file: binShard(2),
    inspector: { message: /missing/ },
    engine: /pytorch_model-00002-of-00006\.bin/,
  },
];

export type BrokenCheckpointSources = Record<BrokenCheckpointCase['from'], string>;

/** Generates the two checkpoints the cases start from, under `root`. */
export async function writeBrokenCheckpointSources(root: string): Promise<BrokenCheckpointSources> {
  const write = async (from: BrokenCheckpointCase['from']): Promise<string> =>
    (
      await generateCheckpoint({
        preset: MINI_ARCHITECTURE,
        seed: 0,
        outDir: join(root, from),
        ...(from.endsWith('sharded') ? { maxShardBytes: SHARD_BYTES } : {}),
        ...(from.startsWith('bin') ? { format: 'bin' as const } : {}),
      })
    ).outDir;
  return {
    single: await write('single'),
    sharded: await write('sharded'),
    bin: await write('bin'),
    'bin-sharded': await write('bin-sharded'),
  };
}

/** Copies the case's source checkpoint to `dir` and breaks it there; returns `dir`. */
export async function writeBrokenCheckpoint(
  brokenCase: BrokenCheckpointCase,
  sources: BrokenCheckpointSources,
  dir: string,
): Promise<string> {
  await cp(sources[brokenCase.from], dir, { recursive: true });
  await brokenCase.breakIt(dir);
  return dir;
}

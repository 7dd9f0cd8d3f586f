import { TensorSpec, tensorByteLength } from './safetensors';

/** Largest shard we write; a checkpoint that fits is one `model.safetensors`. */
export const DEFAULT_MAX_SHARD_BYTES = 4 * 1024 ** 3;

export const SINGLE_FILE_NAME = 'model.safetensors';
export const SHARD_INDEX_FILE_NAME = 'model.safetensors.index.json';

export interface ShardPlan<T extends TensorSpec = TensorSpec> {
  fileName: string;
  tensors: T[];
  /** Sum of tensor data bytes (the file adds its header). */
  dataBytes: number;
}

export function shardFileName(index: number, count: number): string {
  const pad = (n: number): string => String(n).padStart(5, '0');
  return `model-${pad(index + 1)}-of-${pad(count)}.safetensors`;
}

/**
 * Splits tensors, in order, into shards of at most maxShardBytes of data (a tensor larger than that gets
 * a shard of its own), named as transformers' save_pretrained names them.
 */
export function planShards<T extends TensorSpec>(
  tensors: readonly T[],
  maxShardBytes: number = DEFAULT_MAX_SHARD_BYTES,
): ShardPlan<T>[] {
  if (!(maxShardBytes > 0)) throw new RangeError(`maxShardBytes must be > 0 (got ${maxShardBytes})`);
  const groups: Array<{ tensors: T[]; dataBytes: number }> = [];
  let current: { tensors: T[]; dataBytes: number } | undefined;
  for (const tensor of tensors) {
    const bytes = tensorByteLength(tensor);
    if (!current || (current.tensors.length > 0 && current.dataBytes + bytes > maxShardBytes)) {
      current = { tensors: [], dataBytes: 0 };
      groups.push(current);
    }
    current.tensors.push(tensor);
    current.dataBytes += bytes;
  }
  if (groups.length <= 1) {
    return [
      { fileName: SINGLE_FILE_NAME, tensors: groups[0]?.tensors ?? [], dataBytes: groups[0]?.dataBytes ?? 0 },
    ];
  }
  return groups.map((group, index) => ({ fileName: shardFileName(index, groups.length), ...group }));
}

/** model.safetensors.index.json for a multi-shard plan. */
export function shardIndexJson(plans: readonly ShardPlan[]): Record<string, unknown> {
  const weightMap: Record<string, string> = {};
  let totalSize = 0;
  let totalParameters = 0;
  const entries: Array<[string, string]> = [];
  for (const plan of plans) {
    totalSize += plan.dataBytes;
    for (const tensor of plan.tensors) {
      entries.push([tensor.name, plan.fileName]);
      totalParameters += tensor.shape.reduce((product, dim) => product * dim, 1);
    }
  }
  entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [name, file] of entries) weightMap[name] = file;
  return { metadata: { total_size: totalSize, total_parameters: totalParameters }, weight_map: weightMap };
}

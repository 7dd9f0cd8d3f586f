import type { EngineDevice } from './engine.port';

/**
 * How the engine spreads over the GPUs: `replicas` tensor-parallel groups of `tensorParallelSize`
 * consecutive CUDA ordinals. The addon checks the same rules again as its own guard.
 */
export interface DeviceLayout {
  /** The CUDA ordinals the engine loads on (empty on the CPU). */
  deviceIds: number[];
  tensorParallelSize: number;
  replicas: number;
  /** One group of ordinals per replica (empty on the CPU). */
  groups: number[][];
}

/**
 * The layout the service and the admin commands use: on CUDA every visible GPU (`gpuCount`,
 * undefined when it could not be counted), or only `gpus` (a MODELS entry's GPUS) when given,
 * TENSOR_PARALLEL_SIZE a group (default: all of them in one); on the CPU one replica of
 * TENSOR_PARALLEL_SIZE (default 1) threads.
 */
export function deviceLayout(
  device: EngineDevice,
  gpuCount: number | undefined,
  tensorParallelSize?: number,
  gpus?: number[],
): DeviceLayout {
  if (device === 'cpu') {
    return { deviceIds: [], tensorParallelSize: tensorParallelSize ?? 1, replicas: 1, groups: [] };
  }
  if (gpus !== undefined) return listedGpusLayout(gpuCount, tensorParallelSize, gpus);
  if (gpuCount === undefined) throw new Error('cannot count the GPUs; set CUDA_VISIBLE_DEVICES');
  if (gpuCount < 1) throw new Error('DEVICE=cuda but no CUDA device is visible');
  const tp = tensorParallelSize ?? gpuCount;
  if (gpuCount % tp !== 0) {
    throw new Error(`TENSOR_PARALLEL_SIZE=${tp} does not divide the ${gpuCount} visible GPUs`);
  }
  const replicas = gpuCount / tp;
  const groups = Array.from({ length: replicas }, (_, replica) =>
    Array.from({ length: tp }, (_, rank) => replica * tp + rank),
  );
  return { deviceIds: groups.flat(), tensorParallelSize: tp, replicas, groups };
}

/** GPUS: groups are consecutive runs of the list, in its order (the config has checked it already). */
function listedGpusLayout(
  gpuCount: number | undefined,
  tensorParallelSize: number | undefined,
  gpus: number[],
): DeviceLayout {
  if (gpus.length < 1) throw new Error('GPUS names no GPU');
  const seen = new Set<number>();
  for (const gpu of gpus) {
    if (!Number.isInteger(gpu) || gpu < 0) throw new Error(`GPUS: ${gpu} is not a CUDA ordinal`);
    if (seen.has(gpu)) throw new Error(`GPUS names GPU ${gpu} twice`);
    if (gpuCount !== undefined && gpu >= gpuCount) {
      throw new Error(`GPUS names GPU ${gpu}, but ${gpuCount} GPUs are visible (ordinals from 0)`);
    }
    seen.add(gpu);
  }
  const tp = tensorParallelSize ?? gpus.length;
  if (gpus.length % tp !== 0) {
    throw new Error(`TENSOR_PARALLEL_SIZE=${tp} does not divide the ${gpus.length} GPUs of GPUS`);
  }
  const replicas = gpus.length / tp;
  const groups = Array.from({ length: replicas }, (_, replica) =>
    gpus.slice(replica * tp, (replica + 1) * tp),
  );
  return { deviceIds: [...gpus], tensorParallelSize: tp, replicas, groups };
}

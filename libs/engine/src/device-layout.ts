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
 * undefined when it could not be counted), TENSOR_PARALLEL_SIZE a group (default: all of them in one);
 * on the CPU one replica of TENSOR_PARALLEL_SIZE (default 1) threads.
 */
export function deviceLayout(
  device: EngineDevice,
  gpuCount: number | undefined,
  tensorParallelSize?: number,
): DeviceLayout {
  if (device === 'cpu') {
    return { deviceIds: [], tensorParallelSize: tensorParallelSize ?? 1, replicas: 1, groups: [] };
  }
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

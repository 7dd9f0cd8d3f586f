/** How GPUs are grouped: `replicas` tensor-parallel groups of `tensorParallelSize` consecutive ordinals. */
export interface DeviceLayout {
  tensorParallelSize: number;
  replicas: number;
  groups: number[][];
}

/** The layout the service uses: TENSOR_PARALLEL_SIZE (default: all GPUs in one group) over the visible GPUs. */
export function deviceLayout(gpuCount: number, tensorParallelSize?: number): DeviceLayout {
  if (gpuCount < 1) throw new Error('no CUDA device is visible');
  const tp = tensorParallelSize ?? gpuCount;
  if (gpuCount % tp !== 0) {
    throw new Error(`TENSOR_PARALLEL_SIZE=${tp} does not divide the ${gpuCount} visible GPUs`);
  }
  const replicas = gpuCount / tp;
  const groups = Array.from({ length: replicas }, (_, replica) =>
    Array.from({ length: tp }, (_, rank) => replica * tp + rank),
  );
  return { tensorParallelSize: tp, replicas, groups };
}

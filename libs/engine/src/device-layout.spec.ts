import { deviceLayout } from './device-layout';

describe(deviceLayout.name, () => {
  it('groups consecutive GPUs into replicas of TENSOR_PARALLEL_SIZE, all in one group by default', () => {
    expect(deviceLayout('cuda', 4, 2)).toEqual({
      deviceIds: [0, 1, 2, 3],
      tensorParallelSize: 2,
      replicas: 2,
      groups: [
        [0, 1],
        [2, 3],
      ],
    });
    expect(deviceLayout('cuda', 2)).toMatchObject({ tensorParallelSize: 2, replicas: 1, groups: [[0, 1]] });
  });

  it('uses no GPU on the CPU, whatever is visible', () => {
    expect(deviceLayout('cpu', undefined)).toEqual({
      deviceIds: [],
      tensorParallelSize: 1,
      replicas: 1,
      groups: [],
    });
    expect(deviceLayout('cpu', 8, 2).tensorParallelSize).toBe(2);
  });

  it('refuses CUDA layouts that cannot be built', () => {
    expect(() => deviceLayout('cuda', undefined)).toThrow('cannot count the GPUs; set CUDA_VISIBLE_DEVICES');
    expect(() => deviceLayout('cuda', 0)).toThrow('DEVICE=cuda but no CUDA device is visible');
    expect(() => deviceLayout('cuda', 6, 4)).toThrow(
      'TENSOR_PARALLEL_SIZE=4 does not divide the 6 visible GPUs',
    );
  });
});

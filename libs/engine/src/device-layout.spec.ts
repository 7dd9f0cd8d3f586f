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

  describe('with GPUS', () => {
    it('groups consecutive runs of the listed GPUs, in their order', () => {
      expect(deviceLayout('cuda', 4, 2, [3, 1, 2, 0])).toEqual({
        deviceIds: [3, 1, 2, 0],
        tensorParallelSize: 2,
        replicas: 2,
        groups: [
          [3, 1],
          [2, 0],
        ],
      });
      expect(deviceLayout('cuda', 4, undefined, [2, 3])).toEqual({
        deviceIds: [2, 3],
        tensorParallelSize: 2,
        replicas: 1,
        groups: [[2, 3]],
      });
      expect(deviceLayout('cuda', 2, 1, [1])).toMatchObject({ deviceIds: [1], replicas: 1, groups: [[1]] });
    });

    it('needs no GPU count, and uses no GPU on the CPU', () => {
      expect(deviceLayout('cuda', undefined, 1, [5]).groups).toEqual([[5]]);
      expect(deviceLayout('cpu', 4, 1, [1]).deviceIds).toEqual([]);
    });

    it('refuses lists that cannot be laid out', () => {
      expect(() => deviceLayout('cuda', 4, 2, [0, 1, 2])).toThrow(
        'TENSOR_PARALLEL_SIZE=2 does not divide the 3 GPUs of GPUS',
      );
      expect(() => deviceLayout('cuda', 2, 1, [2])).toThrow('GPUS names GPU 2, but 2 GPUs are visible');
      expect(() => deviceLayout('cuda', 4, 1, [1, 1])).toThrow('GPUS names GPU 1 twice');
      expect(() => deviceLayout('cuda', 4, 1, [])).toThrow('GPUS names no GPU');
      expect(() => deviceLayout('cuda', 4, 1, [-1])).toThrow('GPUS: -1 is not a CUDA ordinal');
    });
  });
});

import { packBatch } from '@app/engine/packed-batch';
import { parseCli, parseLayouts, parseShapes, shapeBatch } from './engine-latency';

describe('engine-latency', () => {
  it('reads layouts as name:deviceIds:tp:cudaGraphMaxTokens[:nccl]', () => {
    expect(parseLayouts('tp1:0:1:512  tp2-eager:0,1:2:0 cpu:::0 tp2-nccl:0,1:2:0:nccl')).toEqual([
      { name: 'tp1', deviceIds: [0], tensorParallelSize: 1, cudaGraphMaxTokens: 512, peerAllReduce: true },
      {
        name: 'tp2-eager',
        deviceIds: [0, 1],
        tensorParallelSize: 2,
        cudaGraphMaxTokens: 0,
        peerAllReduce: true,
      },
      { name: 'cpu', deviceIds: [], tensorParallelSize: 1, cudaGraphMaxTokens: 0, peerAllReduce: true },
      {
        name: 'tp2-nccl',
        deviceIds: [0, 1],
        tensorParallelSize: 2,
        cudaGraphMaxTokens: 0,
        peerAllReduce: false,
      },
    ]);
    expect(() => parseLayouts('tp0:0:0:512')).toThrow(/tensor parallel/);
    expect(() => parseLayouts('x:0:1:-1')).toThrow(/cudaGraphMaxTokens/);
    expect(() => parseLayouts('x:0:1:0:gloo')).toThrow(/nccl/);
  });

  it('reads shapes as textsxtokens and builds the same valid batch every time', () => {
    expect(parseShapes('1x16,8x128')).toEqual([
      { texts: 1, tokens: 16 },
      { texts: 8, tokens: 128 },
    ]);
    expect(() => parseShapes('0x16')).toThrow(/bad shape/);
    const batch = shapeBatch({ texts: 3, tokens: 5 }, 64);
    expect(Array.from(batch.cuSeqlens)).toEqual([0, 5, 10, 15]);
    expect(Array.from(batch.dimensions)).toEqual([64, 64, 64]);
    expect(batch.tokenIds.every((id) => id >= 0 && id < 151_665)).toBe(true);
    expect(shapeBatch({ texts: 3, tokens: 5 }, 64)).toEqual(batch);
    // The same layout packBatch produces for three 5-token texts.
    const packed = packBatch(
      [0, 1, 2].map((s) => ({ tokens: batch.tokenIds.slice(s * 5, s * 5 + 5), dimensions: 64 })),
    );
    expect(packed).toEqual(batch);
  });

  it("reads scripts/device/run.sh's flags, and refuses one it does not know", () => {
    expect(
      parseCli([
        '--model',
        'm',
        '--device',
        'cuda',
        '--layouts',
        'tp1:0:1:512',
        '--shapes',
        '1x16',
        '--runs',
        '5',
        '--json',
        'o.json',
      ]),
    ).toMatchObject({ model: 'm', device: 'cuda', dtype: 'bfloat16', runs: 5, json: 'o.json' });
    expect(parseCli(['--model=m', '--device=cpu'])).toMatchObject({ dtype: 'float32', runs: 200 });
    expect(() => parseCli(['--model', 'm', '--run', '5'])).toThrow("Unknown option '--run'");
    expect(() => parseCli(['--runs', '5'])).toThrow('--model is required');
  });
});

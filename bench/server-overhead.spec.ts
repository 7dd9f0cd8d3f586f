import { packBatch } from '@app/engine/packed-batch';
import {
  formatQuantiles,
  InstantEngine,
  outsideEngine,
  parseOptions,
  parsePoints,
  parseServerSpec,
  POINTS,
  quantiles,
  requestBody,
  rotate,
  SHORT_TEXTS,
  unitRow,
} from './server-overhead';

describe('server-overhead bench', () => {
  it('sends one text as a string and several as an array, in the encoding of the point', () => {
    expect(JSON.parse(requestBody({ texts: 1, encoding: 'float' }))).toMatchObject({
      input: SHORT_TEXTS[0],
      encoding_format: 'float',
    });
    const eight = JSON.parse(requestBody({ texts: 8, encoding: 'base64' }));
    expect(eight.input).toEqual(SHORT_TEXTS.slice(0, 8));
    expect(eight.encoding_format).toBe('base64');
    expect(POINTS.map((point) => `${point.texts}/${point.encoding}`)).toEqual([
      '1/float',
      '1/base64',
      '8/float',
      '8/base64',
    ]);
  });

  it('answers every sequence of a batch at once with a unit row of its size', async () => {
    const sut = new InstantEngine();
    const batch = packBatch([
      { tokens: Int32Array.of(1, 2, 3), dimensions: 2560 },
      { tokens: Int32Array.of(4), dimensions: 32 },
    ]);
    const rows = await sut.embed(batch);
    expect(rows).toHaveLength(2592);
    expect(Math.hypot(...rows.subarray(0, 2560))).toBeCloseTo(1, 5);
    expect(Math.hypot(...rows.subarray(2560))).toBeCloseTo(1, 5);
    expect(sut.info()).toMatchObject({ hiddenSize: 2560, vocabSize: 151665, replicas: 1 });
    expect(unitRow(8)).toEqual(unitRow(8));
  });

  it('reads its options, one server being itself unless others are named', () => {
    expect(parseOptions([], '/self.js', '/addon.node')).toEqual({
      points: POINTS,
      requests: 2000,
      warmup: 300,
      rounds: 5,
      servers: [{ label: 'this', script: '/self.js' }],
      addon: '/addon.node',
      json: undefined,
      engineMs: 0,
      busyPoll: false,
    });
    const options = parseOptions(
      ['--requests', '10', '--server', 'before=/a.js', '--server', '/b.js', '--json', 'o.json'],
      '/self.js',
    );
    expect(options).toMatchObject({ requests: 10, json: 'o.json' });
    expect(parseOptions(['--engine-ms', '3', '--busy-poll'], '/self.js')).toMatchObject({
      engineMs: 3,
      busyPoll: true,
    });
    expect(options.servers).toEqual([
      { label: 'before', script: '/a.js' },
      { label: 'server1', script: '/b.js' },
    ]);
    expect(parseOptions(['--points', '1xbase64, 8xfloat'], '/self.js').points).toEqual([
      { texts: 1, encoding: 'base64' },
      { texts: 8, encoding: 'float' },
    ]);
    expect(() => parsePoints('9xfloat')).toThrow('--points');
    expect(() => parsePoints('1xhex')).toThrow('--points');
    expect(parseServerSpec('x.js', 3)).toEqual({ label: 'server3', script: 'x.js' });
    expect(() => parseOptions(['--requests', 'many'], '/self.js')).toThrow(
      '--requests must be a whole number',
    );
  });

  it('answers after its delay when given one, and takes that delay out of the server time', async () => {
    const sut = new InstantEngine(20);
    const batch = packBatch([{ tokens: Int32Array.of(1, 2), dimensions: 8 }]);
    const started = performance.now();
    const rows = await sut.embed(batch);
    expect(performance.now() - started).toBeGreaterThanOrEqual(19);
    expect(rows).toHaveLength(8);
    expect(outsideEngine({ server: [5, 6.5, 7], inference: [3, 3.5] })).toEqual([2, 3]);
  });

  it('starts each round with the next server', () => {
    expect(rotate(['a', 'b', 'c'], 0)).toEqual(['a', 'b', 'c']);
    expect(rotate(['a', 'b', 'c'], 4)).toEqual(['b', 'c', 'a']);
    expect(rotate([], 3)).toEqual([]);
  });

  it('summarises interpolated percentiles and the ratio to a baseline', () => {
    expect(quantiles([4, 1, 3, 2, 5])).toEqual({ p50: 3, p90: 4.6 });
    expect(formatQuantiles({ p50: 1, p90: 2 })).toBe('1.000 / 2.000');
    expect(formatQuantiles({ p50: 0.5, p90: 1 }, { p50: 1, p90: 2 })).toBe('0.500 / 1.000 (0.50x)');
  });
});

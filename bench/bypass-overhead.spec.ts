import { bypassRows, bypassServers, formatBypassRows, parseBypassOptions } from './bypass-overhead';
import { parseFrameworkPaths, PointResult } from './server-overhead';

function result(server: string, serverP50ByRound: number[]): PointResult {
  const q = { p50: serverP50ByRound[0], p90: serverP50ByRound[0] };
  return {
    texts: 1,
    encoding: 'base64',
    server,
    requests: 10,
    serverP50ByRound,
    clientMs: q,
    serverMs: q,
    tokenizationMs: q,
    queueMs: q,
    outsideEngineMs: q,
  };
}

describe('bypass-overhead bench', () => {
  it('runs every bypass, each one the framework way, and all of them that way', () => {
    expect(bypassServers('s.js', ['auth', 'auth'])).toEqual([
      { label: 'bypasses', script: 's.js' },
      { label: 'auth', script: 's.js', framework: ['auth'] },
      { label: 'auth', script: 's.js', framework: ['auth'] },
      { label: 'all-framework', script: 's.js', framework: ['auth', 'auth'] },
    ]);
    expect(parseFrameworkPaths('auth,access-log')).toEqual(['auth', 'auth']);
    expect(parseFrameworkPaths(undefined)).toEqual([]);
    expect(() => parseFrameworkPaths('cache')).toThrow(/--framework/);
  });

  it('reads its options, defaulting to one float text against a 6.5 ms query', () => {
    const sut = parseBypassOptions(['--rounds', '4', '--e2e-ms', '2.5', '--bypasses', 'auth'], 's.js');
    expect(sut).toMatchObject({ queryMs: 6.5, e2eMs: 2.5 });
    expect(sut.bench).toMatchObject({ rounds: 4, engineMs: 0, points: [{ texts: 1, encoding: 'float' }] });
    expect(sut.bench.servers.map((server) => server.label)).toEqual(['bypasses', 'auth', 'all-framework']);
    expect(() => parseBypassOptions(['--bypasses', 'nope'], 's.js')).toThrow(/--bypasses/);
    expect(() => parseBypassOptions(['--query-ms', '0'], 's.js')).toThrow(/--query-ms/);
  });

  it('takes the median over rounds of what each framework path adds, and tells whether it pays', () => {
    const rows = bypassRows([
      result('bypasses', [1.0, 1.1, 0.9]),
      result('auth', [1.4, 1.45, 1.3]),
      result('auth', [1.01, 1.09, 0.92]),
    ]);
    expect(rows.map((row) => [row.bypass, Math.round(row.savedUs), Math.round(row.savedMinUs)])).toEqual([
      ['auth', 400, 350],
      ['auth', 10, -10],
    ]);
    const table = formatBypassRows(rows, 6.5, 2, ['auth: not measured']);
    expect(table).toContain(
      '| 1 x base64 | access-log | 1.000 | 1.400 | 400.0 [350.0, 400.0] | 6.15% | 20.00% | yes |',
    );
    expect(table).toContain('| 1 x base64 | auth |');
    expect(table).toMatch(/\| 0\.15% \| 0\.50% \| no \|/);
    expect(table).toContain('auth: not measured');
  });
});

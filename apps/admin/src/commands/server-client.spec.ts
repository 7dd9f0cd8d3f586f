import { parseServerUrl, progressLog } from './server-client';

describe(progressLog.name, () => {
  it('shows the first step and the last, skips those within 2 s, and says nothing with --json', () => {
    const lines: string[] = [];
    const sut = progressLog(false, (line) => lines.push(line));
    const quiet = progressLog(true, (line) => lines.push(line));

    for (let done = 1; done <= 5; done++) sut(done, 5);
    quiet(5, 5);

    expect(lines).toEqual(['  1/5', '  5/5']);
  });
});

describe(parseServerUrl.name, () => {
  it('normalises a base URL and refuses what is not one', () => {
    expect(parseServerUrl('http://localhost:6008')).toBe('http://localhost:6008/');
    expect(() => parseServerUrl('localhost')).toThrow();
  });
});

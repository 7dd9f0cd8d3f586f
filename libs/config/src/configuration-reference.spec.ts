import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { configVariables, flagName } from './config-flags';

const root = join(__dirname, '..', '..', '..');
const read = (file: string): string => readFileSync(join(root, file), 'utf8');

/** Rows of Markdown tables whose first cell is one variable: `| \`NAME\` | \`--flag\` | ...`. */
function referenceRows(markdown: string): { variable: string; flag: string }[] {
  return [...markdown.matchAll(/^\|\s*`([A-Z][A-Z0-9_]+)`\s*\|([^|]*)\|/gm)].map((match) => ({
    variable: match[1],
    flag: match[2].trim(),
  }));
}

/** The variables named in the first cell of the README's "Configuration" table. */
function readmeTableVariables(readme: string): string[] {
  const section = readme.split(/^## /m).find((part) => part.startsWith('Configuration'));
  if (!section) throw new Error('README.md has no "## Configuration" section');
  const firstCells = [...section.matchAll(/^\|([^|\n]*)\|/gm)].map((match) => match[1]);
  return firstCells.flatMap((cell) => [...cell.matchAll(/`([A-Z][A-Z0-9_]+)`/g)].map((m) => m[1]));
}

describe('configuration reference', () => {
  const variables = configVariables();

  it('reads the schema', () => {
    expect(variables).toEqual(
      expect.arrayContaining(['MODEL_PATH', 'PORT', 'NCCL_DEBUG', 'OMP_NUM_THREADS']),
    );
  });

  it('docs/configuration.md documents every EnvDto variable once, with its flag, and nothing else', () => {
    const rows = referenceRows(read('docs/configuration.md'));
    const documented = rows.map((row) => row.variable);
    expect([...documented].sort()).toEqual([...variables].sort());
    for (const row of rows)
      expect(`${row.variable} ${row.flag}`).toBe(`${row.variable} \`--${flagName(row.variable)}\``);
  });

  it('.env.example lists every EnvDto variable once, and nothing else', () => {
    const listed = [...read('.env.example').matchAll(/^#?\s*([A-Z][A-Z0-9_]+)=/gm)].map((match) => match[1]);
    expect([...listed].sort()).toEqual([...variables].sort());
  });

  it("README's configuration table names only EnvDto variables", () => {
    const named = readmeTableVariables(read('README.md'));
    expect(named.length).toBeGreaterThan(5);
    expect(named.filter((name) => !variables.includes(name))).toEqual([]);
  });
});

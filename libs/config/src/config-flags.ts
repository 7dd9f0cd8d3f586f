import { parseArgs } from 'node:util';
import { getMetadataStorage } from 'class-validator';
import { EnvDto } from './env.dto';

/** `--model-path` for MODEL_PATH: every variable of EnvDto has its flag, so the two cannot drift. */
export function flagName(variable: string): string {
  return variable.toLowerCase().replace(/_/g, '-');
}

/** The variables EnvDto validates, in declaration order. */
export function configVariables(): string[] {
  const names = getMetadataStorage()
    .getTargetValidationMetadatas(EnvDto, '', true, false)
    .map((metadata) => metadata.propertyName);
  return [...new Set(names)];
}

export interface ServerArguments {
  /** Variables set by flags; laid over the environment (flags win), then validated as the environment is. */
  env: Record<string, string>;
  demo: boolean;
  help: boolean;
}

/**
 * The server's command line: `--demo`, `--help`, and one `--flag <value>` per environment variable
 * (`--model-path X` sets MODEL_PATH; booleans take true/false, `--auth-disabled` alone means true).
 * Unknown flags and positionals throw, naming what was wrong.
 */
export function parseServerArguments(argv: string[]): ServerArguments {
  const variables = configVariables();
  const booleans = new Set(
    getMetadataStorage()
      .getTargetValidationMetadatas(EnvDto, '', true, false)
      .filter((metadata) => metadata.name === 'isBoolean')
      .map((metadata) => metadata.propertyName),
  );
  // A boolean flag given alone (next word absent or another flag) means true.
  const args = argv.flatMap((arg, index) => {
    const variable = variables.find((name) => arg === `--${flagName(name)}`);
    const next = argv[index + 1];
    return variable && booleans.has(variable) && (next === undefined || next.startsWith('--'))
      ? [arg, 'true']
      : [arg];
  });
  const options: Record<string, { type: 'string' | 'boolean' }> = {
    demo: { type: 'boolean' },
    help: { type: 'boolean' },
  };
  for (const variable of variables) options[flagName(variable)] = { type: 'string' };
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args, options, strict: true, allowPositionals: false }));
  } catch (error) {
    throw new Error(`${(error as Error).message} (--help lists the options)`);
  }
  const env: Record<string, string> = {};
  for (const variable of variables) {
    const value = values[flagName(variable)];
    if (typeof value === 'string') env[variable] = value;
  }
  return { env, demo: values.demo === true, help: values.help === true };
}

/** `--help`: each flag with the variable it sets. */
export function serverArgumentsHelp(command: string): string {
  const variables = configVariables();
  const width = Math.max(...variables.map((name) => `--${flagName(name)} <value>`.length)) + 2;
  const lines = [
    `usage: ${command} [--demo] [--<option> <value> ...]`,
    '',
    'Every option sets the environment variable beside it (flags win over the environment and .env;',
    'docs/configuration.md describes each). Booleans take true or false.',
    '',
    `  ${'--demo'.padEnd(width)}serve with a generated key in .demo/api-key when none is configured`,
    `  ${'--help'.padEnd(width)}this text`,
    ...variables.map((name) => `  ${`--${flagName(name)} <value>`.padEnd(width)}${name}`),
  ];
  return `${lines.join('\n')}\n`;
}

import { readFileSync } from 'node:fs';
import { loadAppConfig } from './app-config';
import { configVariables, flagName, parseServerArguments, serverArgumentsHelp } from './config-flags';

describe('parseServerArguments', () => {
  it('gives every environment variable of the schema a flag, listed by --help with its name', () => {
    const variables = configVariables();
    expect(variables).toEqual(
      expect.arrayContaining(['MODEL_PATH', 'PORT', 'DEVICE', 'API_KEY', 'LOG_LEVEL']),
    );
    // .env.example documents every variable: each of them has its flag.
    const documented = [...readFileSync('.env.example', 'utf8').matchAll(/^#?\s*([A-Z][A-Z0-9_]+)=/gm)].map(
      (match) => match[1],
    );
    expect(variables).toEqual(expect.arrayContaining(documented));
    const help = serverArgumentsHelp('main.js');
    for (const variable of variables)
      expect(help).toMatch(new RegExp(`--${flagName(variable)} <value>\\s+${variable}\\n`));
  });

  it('turns flags into variables that win over the environment and are validated like it', () => {
    const sut = parseServerArguments([
      '--model-path',
      'models/x',
      '--port=7001',
      '--device',
      'cpu',
      '--demo',
    ]);
    expect(sut).toEqual({
      env: { MODEL_PATH: 'models/x', PORT: '7001', DEVICE: 'cpu' },
      demo: true,
      help: false,
    });
    const config = loadAppConfig({ PORT: '6008', DEVICE: 'cuda', AUTH_DISABLED: 'true', ...sut.env });
    expect(config.server.port).toBe(7001);
    expect(config.model.device).toBe('cpu');
    expect(() =>
      loadAppConfig({ AUTH_DISABLED: 'true', ...parseServerArguments(['--port', 'x']).env }),
    ).toThrow(/Invalid environment variables: PORT: must be an integer/);
  });

  it('reads a boolean flag given alone as true, and takes an explicit value', () => {
    expect(parseServerArguments(['--auth-disabled', '--busy-poll', 'false', '--auto-truncate']).env).toEqual({
      AUTH_DISABLED: 'true',
      BUSY_POLL: 'false',
      AUTO_TRUNCATE: 'true',
    });
  });

  it('refuses unknown flags and stray words, pointing at --help', () => {
    expect(() => parseServerArguments(['--modle-path', 'x'])).toThrow(
      /--modle-path.*--help lists the options/,
    );
    expect(() => parseServerArguments(['serve'])).toThrow(/--help/);
    expect(parseServerArguments(['--help']).help).toBe(true);
  });
});

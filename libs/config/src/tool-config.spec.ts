import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadBenchConfig, loadToolConfig } from './tool-config';

describe(loadToolConfig.name, () => {
  const saved = { ...process.env };
  const cwd = process.cwd();
  let dir: string;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tool-config-'));
    process.chdir(dir);
    for (const name of [
      'MODELS',
      'MODEL_PATH',
      'MODEL_ID',
      'DEVICE',
      'DTYPE',
      'NATIVE_ADDON_PATH',
      'BUSY_POLL_LINGER_MS',
    ])
      delete process.env[name];
  });

  afterEach(() => {
    process.chdir(cwd);
    process.env = { ...saved };
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves what make serve serves when nothing names a model or device: the demo model on the CPU', () => {
    mkdirSync('models/Qwen3-Embedding-tiny', { recursive: true });
    const sut = loadToolConfig({}, () => false);
    expect(sut.config.model.path).toBe('./models/Qwen3-Embedding-tiny');
    expect(sut.config.model.device).toBe('cpu');
    expect(sut.notes).toEqual([
      expect.stringContaining('demo model'),
      expect.stringContaining('no CUDA GPU'),
    ]);
    expect(sut.config.auth.disabled).toBe(true); // no key needed by a tool
  });

  it('keeps the 4B and cuda defaults where they exist', () => {
    mkdirSync('models/Qwen3-Embedding-4B', { recursive: true });
    mkdirSync('models/Qwen3-Embedding-tiny', { recursive: true });
    const sut = loadToolConfig({}, () => true);
    expect(sut.config.model.path).toBe('./models/Qwen3-Embedding-4B');
    expect(sut.config.model.device).toBe('cuda');
    expect(sut.notes).toEqual([]);
  });

  it('reads .env as the server does, under the environment, under the options', () => {
    mkdirSync('models/Qwen3-Embedding-tiny', { recursive: true });
    writeFileSync('.env', 'MODEL_PATH=/from/dotenv\nDEVICE=cuda\nDTYPE=float16\n');
    process.env.DTYPE = 'bfloat16';
    const fromFile = loadToolConfig({}, () => false);
    expect(fromFile.config.model).toMatchObject({ path: '/from/dotenv', device: 'cuda', dtype: 'bfloat16' });
    expect(fromFile.notes).toEqual([]);
    const fromOptions = loadToolConfig({ MODEL_PATH: 'models/mine', DEVICE: 'cpu' }, () => true);
    expect(resolve(fromOptions.config.model.path)).toBe(resolve(dir, 'models/mine'));
    expect(fromOptions.config.model.device).toBe('cpu');
  });

  it("takes MODELS' first entry, unless the options name a model", () => {
    mkdirSync('models/Qwen3-Embedding-tiny', { recursive: true });
    writeFileSync('.env', 'MODELS=[{"MODEL_PATH": "/models/a"}, {"MODEL_PATH": "/models/b"}]\n');
    const fromModels = loadToolConfig({}, () => false);
    expect(fromModels.config.model.path).toBe('/models/a');
    expect(fromModels.notes).toEqual([expect.stringContaining('no CUDA GPU')]);
    const fromOptions = loadToolConfig({ MODEL_PATH: '/models/mine' }, () => false);
    expect(fromOptions.config.models.map(({ model }) => model.path)).toEqual(['/models/mine']);
  });

  describe(loadBenchConfig.name, () => {
    it("gives a bench the addon's path and the busy-poll linger from the environment over .env, checked", () => {
      expect(loadBenchConfig().model.nativeAddonPath).toBeUndefined();
      expect(loadBenchConfig().server.busyPollLingerMs).toBe(20);
      writeFileSync('.env', 'NATIVE_ADDON_PATH=/from/dotenv.node\nBUSY_POLL_LINGER_MS=5\n');
      expect(loadBenchConfig()).toMatchObject({
        model: { nativeAddonPath: '/from/dotenv.node' },
        server: { busyPollLingerMs: 5 },
      });
      process.env.NATIVE_ADDON_PATH = '/from/env.node';
      expect(loadBenchConfig().model.nativeAddonPath).toBe('/from/env.node');
      process.env.BUSY_POLL_LINGER_MS = 'soon';
      expect(() => loadBenchConfig()).toThrow(/Invalid environment variables: .*BUSY_POLL_LINGER_MS/);
    });
  });
});

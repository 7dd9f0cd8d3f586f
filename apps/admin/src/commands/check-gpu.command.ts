import { formatBytes } from '@app/checkpoint';
import { deviceLayout } from '@app/engine/device-layout';
import { Command, CommandRunner, Option } from 'nest-commander';
import { EngineSession } from '../engine/engine-session';
import { EngineCommandOptions, engineOptionParsers, overridesFrom } from './engine-options';

interface CheckGpuOptions extends EngineCommandOptions {
  model?: boolean;
}

class CheckFailed extends Error {}

/**
 * The GPU readiness check: addon build, visible devices and memory, the replica / tensor-parallel
 * layout from the configuration, one NCCL all-reduce per group, then the model loaded onto that layout
 * (which weights sit on which GPU, and how much memory they take) and one forward pass.
 */
@Command({
  name: 'check-gpu',
  description: 'check CUDA devices, NCCL all-reduce per tensor-parallel group, and the model on them',
})
export class CheckGpuCommand extends CommandRunner {
  constructor(private readonly sessions: EngineSession) {
    super();
  }

  async run(_params: string[], options: CheckGpuOptions): Promise<void> {
    const out = (line = ''): void => {
      process.stdout.write(`${line}\n`);
    };
    try {
      await this.check(options, out);
      out('check-gpu: OK');
    } catch (error) {
      out(`check-gpu: FAILED: ${(error as Error).message}`);
      process.exitCode = 1;
    }
  }

  private async check(options: CheckGpuOptions, out: (line?: string) => void): Promise<void> {
    const overrides = { ...overridesFrom(options), device: 'cuda' as const };
    const config = this.sessions.config(overrides);
    const engine = this.sessions.engine(config);
    const build = engine.buildInfo();
    out(`addon      ${engine.addonPath}`);
    out(
      `build      torch ${build.torchVersion}, cuda ${build.cuda}, nccl ${build.nccl}, flash attention ${build.flashAttention}`,
    );
    if (!build.cuda) throw new CheckFailed('the addon was built without CUDA (CPU-only libtorch)');

    const devices = engine.cudaDevices();
    out(
      `devices    ${devices.length} visible${config.model.visibleCudaDevices !== undefined ? ' (CUDA_VISIBLE_DEVICES is set)' : ''}`,
    );
    for (const device of devices) {
      out(
        `  cuda:${device.index}  ${device.name}  ${formatBytes(device.totalMemoryBytes)} total, ${formatBytes(device.freeMemoryBytes)} free`,
      );
    }
    if (devices.length === 0)
      throw new CheckFailed('no CUDA device is visible (driver, container runtime or CUDA_VISIBLE_DEVICES)');

    const layout = deviceLayout('cuda', devices.length, config.model.tensorParallelSize, config.model.gpus);
    out(
      `layout     ${layout.replicas} replica(s) x tensor parallel ${layout.tensorParallelSize}: ${layout.groups.map((group) => `[${group.join(',')}]`).join(' ')}`,
    );
    for (const group of layout.groups) {
      if (group.length === 1) {
        out(`  all-reduce [${group.join(',')}]: single GPU, no collective needed`);
        continue;
      }
      if (!build.nccl)
        throw new CheckFailed(
          `tensor parallel ${group.length} needs NCCL, and the addon was built without it`,
        );
      const result = await engine.allReduceCheck(group, config.model.peerAllReduce).catch((error: Error) => {
        throw new CheckFailed(`NCCL all-reduce over [${group.join(',')}] failed: ${error.message}`);
      });
      out(
        `  all-reduce [${group.join(',')}]: ${result.ok ? 'ok' : 'WRONG SUM'} (${formatBytes(result.bytes)} in ${result.ms.toFixed(2)} ms; ` +
          `a short query's ${formatBytes(result.smallBytes)}: ${result.smallPath === 'peer' ? 'peer kernel' : 'NCCL'}, ${result.smallUs.toFixed(1)} us each)`,
      );
      if (!result.ok) throw new CheckFailed(`NCCL all-reduce over [${group.join(',')}] returned a wrong sum`);
    }
    await engine.dispose();

    if (options.model === false) return;
    out(`model      loading ${config.model.path} (${config.model.dtype})`);
    const session = await this.sessions.open(overrides).catch((error: Error) => {
      throw new CheckFailed(`loading the model failed: ${error.message}`);
    });
    try {
      const info = session.model.info;
      out(
        `           ${info.modelType}: ${info.numLayers} layers, hidden ${info.hiddenSize}, ${info.parameters.toLocaleString('en-US')} parameters, ${info.replicas} replica(s) x tp ${info.tensorParallelSize}`,
      );
      for (const device of info.devices) {
        out(
          `  cuda:${device.index}  replica ${device.replica} rank ${device.rank}/${info.tensorParallelSize}: ${formatBytes(device.usedMemoryBytes)} used of ${formatBytes(device.totalMemoryBytes)} (heads ${headsOf(info.numAttentionHeads, info.tensorParallelSize, device.rank)}, kv heads ${headsOf(info.numKeyValueHeads, info.tensorParallelSize, device.rank)}, mlp ${info.intermediateSize / info.tensorParallelSize} columns)`,
        );
      }
      const [sequence] = await session.tokenizer.encode(['check-gpu']);
      const started = performance.now();
      const row = await session.engine.embed({
        tokenIds: sequence,
        cuSeqlens: Int32Array.from([0, sequence.length]),
        dimensions: Int32Array.from([info.outputDimension]),
      });
      const norm = Math.sqrt(row.reduce((sum, value) => sum + value * value, 0));
      out(
        `forward    ${sequence.length} tokens in ${(performance.now() - started).toFixed(1)} ms, norm ${norm.toFixed(6)}`,
      );
      if (!(Math.abs(norm - 1) < 1e-3)) throw new CheckFailed(`the embedding's norm is ${norm}, expected 1`);
    } finally {
      await this.sessions.close(session);
    }
  }

  @Option({ flags: '--no-model', description: 'skip loading the model' })
  parseNoModel(): boolean {
    return false;
  }

  @Option({ flags: '--model-path <dir>', description: 'checkpoint directory (default: MODEL_PATH)' })
  parseModelPath(value: string): string {
    return engineOptionParsers.modelPath(value);
  }

  @Option({ flags: '--dtype <dtype>', description: 'bfloat16 or float16 or float32 (default: DTYPE)' })
  parseDtype(value: string): 'float32' | 'bfloat16' | 'float16' {
    return engineOptionParsers.dtype(value);
  }

  @Option({
    flags: '--tp <n>',
    description: 'tensor-parallel size (default: TENSOR_PARALLEL_SIZE, else all GPUs)',
  })
  parseTp(value: string): number {
    return engineOptionParsers.tp(value);
  }

  @Option({ flags: '--addon <path>', description: 'qwen3_embed.node (default: NATIVE_ADDON_PATH)' })
  parseAddon(value: string): string {
    return value;
  }
}

/** The contiguous block of heads a rank holds under the Megatron split. */
function headsOf(heads: number, tp: number, rank: number): string {
  const per = heads / tp;
  return `${rank * per}-${(rank + 1) * per - 1}`;
}

import { CheckpointService } from '@app/checkpoint';
import { loadHubConfig } from '@app/config';
import { HubModelDownloader } from '@app/hub';
import { Command, CommandRunner, Option, SubCommand } from 'nest-commander';

@SubCommand({
  name: 'inspect',
  arguments: '<dir>',
  description: 'validate a checkpoint directory and summarise it (exit 1 on problems)',
})
export class InspectModelCommand extends CommandRunner {
  constructor(private readonly checkpoints: CheckpointService) {
    super();
  }

  async run([dir]: string[], options: { json?: boolean }): Promise<void> {
    const report = await this.checkpoints.inspect(dir);
    process.stdout.write(
      options.json ? `${JSON.stringify(report, null, 2)}\n` : `${this.checkpoints.format(report)}\n`,
    );
    if (!report.ok) process.exitCode = 1;
  }

  @Option({ flags: '--json', description: 'print the report as JSON' })
  parseJson(): boolean {
    return true;
  }
}

interface DownloadOptions {
  revision?: string;
  cacheDir?: string;
}

/**
 * What MODEL_ID does at boot, as a separate step (a container's init step, a warm cache): downloads
 * into the huggingface_hub cache with the same environment (HF_TOKEN, HF_HOME/HF_HUB_CACHE,
 * HF_ENDPOINT, HF_HUB_OFFLINE). Progress goes to stderr; stdout gets the snapshot directory alone.
 */
@SubCommand({
  name: 'download',
  arguments: '<model-id>',
  description:
    'download a Hub model (e.g. Qwen/Qwen3-Embedding-4B) into the Hugging Face cache, resumable and verified; prints the snapshot directory',
})
export class DownloadModelCommand extends CommandRunner {
  constructor(private readonly downloader: HubModelDownloader) {
    super();
  }

  async run([modelId]: string[], options: DownloadOptions): Promise<void> {
    const config = loadHubConfig({ modelId, revision: options.revision, cacheDir: options.cacheDir });
    const abort = new AbortController();
    const stop = () => abort.abort();
    process.once('SIGINT', stop).once('SIGTERM', stop);
    try {
      const snapshot = await this.downloader.download(config, {
        signal: abort.signal,
        log: (line) => process.stderr.write(`${line}\n`),
        warn: (line) => process.stderr.write(`warning: ${line}\n`),
      });
      process.stdout.write(`${snapshot.directory}\n`);
    } finally {
      process.off('SIGINT', stop).off('SIGTERM', stop);
    }
  }

  @Option({
    flags: '--revision <rev>',
    description: 'branch, tag or commit (default: MODEL_REVISION or main)',
  })
  parseRevision(value: string): string {
    return value;
  }

  @Option({
    flags: '--cache-dir <dir>',
    description:
      'the Hugging Face cache (default: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub)',
  })
  parseCacheDir(value: string): string {
    return value;
  }
}

@Command({
  name: 'model',
  description: 'model tools (inspect a directory, download from the Hub)',
  subCommands: [InspectModelCommand, DownloadModelCommand],
})
export class ModelCommand extends CommandRunner {
  async run(): Promise<void> {
    this.command.help();
  }
}

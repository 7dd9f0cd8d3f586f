import { Module, OnModuleInit } from '@nestjs/common';
import { InjectCommander } from 'nest-commander';
import { LoadGenerator } from '@app/bench/load-generator';
import { RerankLoadGenerator } from '@app/bench/rerank-load-generator';
import { CheckpointModule } from '@app/checkpoint';
import { HubModelDownloader } from '@app/hub';
import { BenchCommand } from './commands/bench.command';
import { CheckGpuCommand } from './commands/check-gpu.command';
import { CheckpointCommand, GenerateCheckpointCommand } from './commands/checkpoint.command';
import { EmbedCommand } from './commands/embed.command';
import { CreateKeyCommand, KeysCommand } from './commands/keys.command';
import { DownloadModelCommand, InspectModelCommand, ModelCommand } from './commands/model.command';
import { RerankCommand } from './commands/rerank.command';
import { EngineSession } from './engine/engine-session';
import { ApiKeyGenerator } from './keys/api-key-generator';

/** The program name the help prints: the CLI runs as `npm run admin -- <command>`. */
export const ADMIN_CLI_NAME = 'admin';

@Module({
  imports: [CheckpointModule],
  providers: [
    CheckpointCommand,
    GenerateCheckpointCommand,
    ModelCommand,
    InspectModelCommand,
    DownloadModelCommand,
    HubModelDownloader,
    KeysCommand,
    CreateKeyCommand,
    ApiKeyGenerator,
    BenchCommand,
    LoadGenerator,
    RerankLoadGenerator,
    EmbedCommand,
    RerankCommand,
    CheckGpuCommand,
    EngineSession,
  ],
})
export class AdminModule implements OnModuleInit {
  constructor(@InjectCommander() private readonly program: { name(name: string): unknown }) {}

  // nest-commander uses cliName only to look for plugin config files; left alone, commander names the
  // program after the script file (`Usage: main`).
  onModuleInit(): void {
    this.program.name(ADMIN_CLI_NAME);
  }
}

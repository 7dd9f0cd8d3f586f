import { Module } from '@nestjs/common';
import { CheckpointModule } from '@app/checkpoint';
import { BenchCommand } from './commands/bench.command';
import { CheckGpuCommand } from './commands/check-gpu.command';
import { CheckpointCommand, GenerateCheckpointCommand } from './commands/checkpoint.command';
import { EmbedCommand } from './commands/embed.command';
import { CreateKeyCommand, KeysCommand } from './commands/keys.command';
import { InspectModelCommand, ModelCommand } from './commands/model.command';
import { EngineSession } from './engine/engine-session';
import { ApiKeyGenerator } from './keys/api-key-generator';
import { LoadGenerator } from './bench/load-generator';

@Module({
  imports: [CheckpointModule],
  providers: [
    CheckpointCommand,
    GenerateCheckpointCommand,
    ModelCommand,
    InspectModelCommand,
    KeysCommand,
    CreateKeyCommand,
    ApiKeyGenerator,
    BenchCommand,
    LoadGenerator,
    EmbedCommand,
    CheckGpuCommand,
    EngineSession,
  ],
})
export class AdminModule {}

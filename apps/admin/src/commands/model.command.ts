import { CheckpointService } from '@app/checkpoint';
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

@Command({
  name: 'model',
  description: 'model directory tools (inspect)',
  subCommands: [InspectModelCommand],
})
export class ModelCommand extends CommandRunner {
  async run(): Promise<void> {
    this.command.help();
  }
}

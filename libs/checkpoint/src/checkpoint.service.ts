import { Injectable } from '@nestjs/common';
import { generateCheckpoint, GenerateCheckpointOptions, GeneratedCheckpoint } from './checkpoint-generator';
import { CheckpointReport, formatCheckpointReport, inspectCheckpoint } from './checkpoint-inspector';

/** Checkpoint tooling for Nest apps (the admin CLI); the functions behind it work without Nest too. */
@Injectable()
export class CheckpointService {
  generate(options: GenerateCheckpointOptions): Promise<GeneratedCheckpoint> {
    return generateCheckpoint(options);
  }

  inspect(directory: string): Promise<CheckpointReport> {
    return inspectCheckpoint(directory);
  }

  format(report: CheckpointReport): string {
    return formatCheckpointReport(report);
  }
}

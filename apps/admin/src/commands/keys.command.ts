import { Command, CommandRunner, Option, SubCommand } from 'nest-commander';
import { ApiKeyGenerator } from '../keys/api-key-generator';

@SubCommand({ name: 'create', description: 'print a new API key and its sha256 line for API_KEYS_FILE' })
export class CreateKeyCommand extends CommandRunner {
  constructor(private readonly keys: ApiKeyGenerator) {
    super();
  }

  async run(_params: string[], options: { json?: boolean }): Promise<void> {
    const { key, digestLine } = this.keys.create();
    if (options.json) {
      process.stdout.write(`${JSON.stringify({ key, digestLine })}\n`);
      return;
    }
    process.stdout.write(`key:      ${key}\n`);
    process.stdout.write(`keysfile: ${digestLine}\n`);
    process.stderr.write(
      'Give the key to the client (it is not stored anywhere); append the sha256 line to API_KEYS_FILE.\n',
    );
  }

  @Option({ flags: '--json', description: 'print {"key", "digestLine"} as JSON' })
  parseJson(): boolean {
    return true;
  }
}

@Command({ name: 'keys', description: 'API key tools (create)', subCommands: [CreateKeyCommand] })
export class KeysCommand extends CommandRunner {
  async run(): Promise<void> {
    this.command.help();
  }
}

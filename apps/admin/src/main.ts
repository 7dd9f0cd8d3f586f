import 'reflect-metadata';
import { CommandFactory } from 'nest-commander';
import { ADMIN_CLI_NAME, AdminModule } from './admin.module';

/**
 * The admin CLI: `npm run admin -- <command>`. Commands that need no model (checkpoint, model inspect,
 * keys, bench) boot nothing heavy: the engine is created inside the commands that use it.
 */
async function main(): Promise<void> {
  const fail = (error: Error): void => {
    const code = (error as { code?: string }).code;
    // commander reports --help/--version as errors with these codes; they are not failures.
    if (code === 'commander.helpDisplayed' || code === 'commander.version' || code === 'commander.help')
      return;
    if (!code?.startsWith('commander.')) process.stderr.write(`error: ${error.message}\n`);
    process.exitCode = 1;
  };
  await CommandFactory.run(AdminModule, {
    cliName: ADMIN_CLI_NAME,
    logger: ['error', 'warn'],
    errorHandler: fail,
    serviceErrorHandler: fail,
  });
}

void main();

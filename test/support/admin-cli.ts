import { CommandFactory, CommandRunnerService } from 'nest-commander';
import { ADMIN_CLI_NAME, AdminModule } from '../../apps/admin/src/admin.module';

/**
 * Runs one `npm run admin -- ...` command in this process (the real AdminModule and its commands,
 * as compiled for the test), so a test can use exactly the arguments a fixture recorded without a
 * built dist/. Rejects with the command's error; its output goes to a string, not the test's log.
 */
export async function runAdmin(args: string[]): Promise<string> {
  let failure: Error | undefined;
  const fail = (error: Error): void => {
    failure ??= error;
  };
  const app = await CommandFactory.createWithoutRunning(AdminModule, {
    cliName: ADMIN_CLI_NAME,
    logger: false,
    errorHandler: fail,
    serviceErrorHandler: fail,
  });
  const output: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array) => (output.push(String(chunk)), true)) as typeof write;
  try {
    await app.get(CommandRunnerService).run(['node', ADMIN_CLI_NAME, ...args]);
  } finally {
    process.stdout.write = write;
    await app.close();
  }
  if (failure) throw new Error(`admin ${args.join(' ')}: ${failure.message}\n${output.join('')}`);
  return output.join('');
}

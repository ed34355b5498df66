// `cawa`: one sub-command per file; each file exports `register(program)`.
import { Command } from 'commander';
import { register as registerGenerate } from './generate.ts';

const program = new Command('cawa')
  .description('Channel awareness for class-conditional GANs (BigGAN-deep)')
  .showHelpAfterError();

registerGenerate(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  const msg = err instanceof Error ? err.message : String(err);
  process.stderr.write(`cawa: ${msg}\n`);
  if (process.env.CAWA_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
  process.exitCode = 1;
});

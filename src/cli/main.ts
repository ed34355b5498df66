// `cawa`: one sub-command per file; each file exports `register(program)`.
import { Command } from 'commander';
import { register as registerDownload } from './download.ts';
import { register as registerGenerate } from './generate.ts';
import { register as registerAwareness } from './awareness.ts';
import { register as registerChannels } from './channels.ts';
import { register as registerSimilar } from './similar.ts';
import { register as registerReport } from './report.ts';
import { register as registerFindings } from './findings.ts';
import { register as registerModels } from './models.ts';

// `cawa … | head` closes stdout early: stop quietly instead of dying on EPIPE with a stack trace
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

const program = new Command('cawa')
  .description('Channel awareness for class-conditional GANs (BigGAN-deep)')
  .showHelpAfterError();

registerGenerate(program);
registerAwareness(program);
registerChannels(program);
registerSimilar(program);
registerReport(program);
registerFindings(program);
registerDownload(program);
registerModels(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  const msg = err instanceof Error ? err.message : String(err);
  process.stderr.write(`cawa: ${msg}\n`);
  if (process.env.CAWA_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
  process.exitCode = 1;
});

// Options and helpers shared by the sub-commands.
import { Command, InvalidArgumentError, Option } from 'commander';
import { SingleBar } from 'cli-progress';
import { ClassSpace } from '../model/classes.ts';
import type { LoadedModel } from '../model/load.ts';

export function modelOptions(cmd: Command): Command {
  return cmd
    .option('-m, --model <model>', 'model folder, weights file, or downloaded model name (default: the shipped Fashion-MNIST model)')
    .option('--weights <file>', 'weights file to use instead of the one in the model folder')
    .addOption(new Option('--threads <n>', 'onnxruntime threads (default: all cores)').argParser(intIn(1, 256)));
}

export function intIn(min: number, max: number) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`expected an integer in [${min}, ${max}], got "${v}"`);
    return n;
  };
}

export function numberIn(min: number, max: number, { openMin = false } = {}) {
  return (v: string) => {
    const n = Number(v);
    const ok = Number.isFinite(n) && (openMin ? n > min : n >= min) && n <= max;
    if (!ok) throw new InvalidArgumentError(`expected a number in ${openMin ? '(' : '['}${min}, ${max}], got "${v}"`);
    return n;
  };
}

export function truncationOption(): Option {
  return new Option('-t, --truncation <t>', 'truncation in (0, 1]: z is truncnorm(−2, 2)·t and BN statistics follow t')
    .default(1)
    .argParser(numberIn(0, 1, { openMin: true }));
}

export function classSpace(model: LoadedModel): ClassSpace {
  if (model.labels) return ClassSpace.fromLabels(model.labels);
  if (model.config.num_classes === 1000) return ClassSpace.imagenet();
  return ClassSpace.fromLabels(Array.from({ length: model.config.num_classes }, (_, i) => String(i)));
}

/** A progress bar on stderr; silent for a single step, plain lines when stderr is not a terminal. */
export function progress(total: number, label: string) {
  if (total <= 1 || process.env.CAWA_NO_PROGRESS) return { update: (_: number) => {}, stop: () => {} };
  const bar = new SingleBar({
    format: `${label} [{bar}] {percentage}% | {value}/{total} | {duration_formatted} elapsed, ETA {eta_formatted}`,
    stream: process.stderr,
    noTTYOutput: true,
    notTTYSchedule: 5000,
    hideCursor: true,
  });
  bar.start(total, 0);
  return { update: (v: number) => bar.update(v), stop: () => bar.stop() };
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** 1536 → "1.50 KiB": binary units, which is also what the reference port's README means by "MB". */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  for (; v >= 1024 && i < units.length - 1; i++) v /= 1024;
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

/**
 * A byte-count bar on stderr for one transfer: size, speed and time left. `CAWA_NO_PROGRESS=1` turns it off;
 * off a terminal it prints a plain line now and then, so CI logs still show progress.
 */
export function byteProgress(label: string) {
  if (process.env.CAWA_NO_PROGRESS && process.env.CAWA_NO_PROGRESS !== '0') return { update: (_r: number, _t?: number) => {}, stop: () => {} };
  let bar: SingleBar | undefined;
  let started = 0;
  let base = 0;
  const speed = (received: number): string => {
    const s = (Date.now() - started) / 1000;
    return s > 0.2 ? `${formatBytes((received - base) / s)}/s` : '…';
  };
  return {
    /** `received` counts bytes already on disk from an earlier run, so the bar starts where it left off */
    update(received: number, total?: number) {
      if (!bar) {
        started = Date.now();
        base = received;
        bar = new SingleBar({
          format: total
            ? `${label} [{bar}] {percentage}% | {got} / {size} | {speed} | ETA {eta_formatted}`
            : `${label} {got} | {speed} | {duration_formatted}`,
          stream: process.stderr,
          noTTYOutput: true,
          notTTYSchedule: 5000,
          hideCursor: true,
          etaBuffer: 50,
        });
        bar.start(total || 1, received, { got: formatBytes(received), size: total ? formatBytes(total) : '?', speed: '…' });
        return;
      }
      bar.update(received, { got: formatBytes(received), speed: speed(received) });
    },
    stop() {
      bar?.stop();
      bar = undefined;
    },
  };
}

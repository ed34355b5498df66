// The engine: onnxruntime-node sessions over the trunk graph (built once per model: one for images, one more
// on the first request for activations), fed with conditioning computed in TypeScript. Batched; any CCBN's
// post-ReLU activations on request; per-channel edits after any CCBN without rebuilding anything.
import * as ort from 'onnxruntime-node';
import { architecture, type Architecture, type BigGANConfig } from './config.ts';
import { conditioning, foldNorm, truncationStats, type Conditioning } from './conditioning.ts';
import { actOutput, buildTrunk, ccbnInputs } from './graph.ts';
import { extractWeights, type GeneratorWeights } from './weights.ts';
import type { StateDict } from '../io/tensor.ts';

/** Per-channel edit after CCBN i's ReLU: h·mul + add. Arrays hold C values (all samples) or n·C (per sample). */
export interface ChannelEdit {
  mul?: Float32Array;
  add?: Float32Array;
}

export interface ForwardOptions {
  truncation: number;
  /** CCBN index → edit */
  edits?: Map<number, ChannelEdit>;
  /** CCBN indices whose post-ReLU activations to return */
  fetch?: number[];
}

export interface ForwardResult {
  /** [n, 3, R, R] in [-1, 1] */
  images: Float32Array;
  /** CCBN index → [n, C, h, w] */
  activations: Map<number, Float32Array>;
}

export interface GeneratorOptions {
  /** intra-op threads for onnxruntime (default: all cores) */
  threads?: number;
}

export function checkTruncation(t: number): void {
  if (!(Number.isFinite(t) && t > 0 && t <= 1)) throw new Error(`truncation must be in (0, 1], got ${t}`);
}

export class Generator {
  /** the trunk that returns every CCBN's activations on request, built on the first such request */
  private withActivations?: Promise<ort.InferenceSession>;

  private constructor(
    readonly arch: Architecture,
    readonly weights: GeneratorWeights,
    /** the trunk that returns images only: no activation outputs, so ORT reuses their memory */
    private readonly imagesOnly: ort.InferenceSession,
    /** the options it was created with (graphs built on the trunk reuse its thread count) */
    readonly options: GeneratorOptions = {},
  ) {}

  static async create(config: BigGANConfig, sd: StateDict, opts: GeneratorOptions = {}): Promise<Generator> {
    const arch = architecture(config);
    const weights = extractWeights(arch, sd);
    const session = await trunkSession(arch, weights, opts, false);
    return new Generator(arch, weights, session, opts);
  }

  get config(): BigGANConfig {
    return this.arch.config;
  }

  /** γ and β of every CCBN for n samples: z [n, z_dim], y [n, num_classes] (one-hot or soft). */
  conditioning(z: Float32Array, y: Float32Array, n: number): Conditioning {
    return conditioning(this.arch, this.weights, z, y, n);
  }

  /** The trunk graph's inputs for one batch of conditioning (also fed to graphs built on the trunk). */
  trunkFeeds(c: Conditioning, opts: Pick<ForwardOptions, 'truncation' | 'edits'>): Record<string, ort.Tensor> {
    checkTruncation(opts.truncation);
    const { n } = c;
    const feeds: Record<string, ort.Tensor> = { cond: new ort.Tensor('float32', c.cond, [n, this.arch.condDim]) };
    const { eps, n_stats } = this.arch.config;
    for (const spec of this.arch.ccbns) {
      const i = spec.index;
      const C = spec.channels;
      const bn = this.weights.blocks[spec.block].bn[spec.j];
      const { mean, variance } = truncationStats(bn.means, bn.vars, n_stats, opts.truncation);
      const { scale, shift } = foldNorm(c.gamma[i], c.beta[i], mean, variance, eps);
      const names = ccbnInputs(i);
      feeds[names.scale] = new ort.Tensor('float32', scale, [n, C, 1, 1]);
      feeds[names.shift] = new ort.Tensor('float32', shift, [n, C, 1, 1]);
      const edit = opts.edits?.get(i);
      feeds[names.mul] = editTensor(edit?.mul, 1, n, C, `edit of ${spec.name} (mul)`);
      feeds[names.add] = editTensor(edit?.add, 0, n, C, `edit of ${spec.name} (add)`);
    }
    const fb = this.weights.finalBn;
    const C = this.arch.outChannels;
    const { mean, variance } = truncationStats(fb.means, fb.vars, n_stats, opts.truncation);
    const { scale, shift } = foldNorm(fb.weight, fb.bias, mean, variance, eps);
    feeds['final.scale'] = new ort.Tensor('float32', scale, [1, C, 1, 1]);
    feeds['final.shift'] = new ort.Tensor('float32', shift, [1, C, 1, 1]);
    return feeds;
  }

  /** Run the trunk for one batch of conditioning. */
  async forward(c: Conditioning, opts: ForwardOptions): Promise<ForwardResult> {
    const feeds = this.trunkFeeds(c, opts);
    const fetch = opts.fetch ?? [];
    let session = this.imagesOnly;
    if (fetch.length > 0) session = await (this.withActivations ??= trunkSession(this.arch, this.weights, this.options, true));
    const out = await session.run(feeds, ['image', ...fetch.map(actOutput)]);
    const activations = new Map<number, Float32Array>();
    for (const i of fetch) activations.set(i, out[actOutput(i)].data as Float32Array);
    return { images: out.image.data as Float32Array, activations };
  }

  async release(): Promise<void> {
    await this.imagesOnly.release();
    if (this.withActivations) await (await this.withActivations).release();
  }
}

/** Session options for the trunk and for graphs built on it (src/awareness/taylor.ts). */
export function trunkSessionOptions(opts: GeneratorOptions): ort.InferenceSession.SessionOptions {
  return {
    intraOpNumThreads: opts.threads ?? 0,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    // ORT's arena keeps the peak of every allocation size it has seen; without it, BigGAN-deep-256 at batch 8
    // peaks at about 2.0 GiB instead of 3.0 GiB, at the same speed (npm run bench:generate)
    enableCpuMemArena: false,
  };
}

function trunkSession(arch: Architecture, w: GeneratorWeights, opts: GeneratorOptions, activationOutputs: boolean): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(buildTrunk(arch, w, { activationOutputs }), trunkSessionOptions(opts));
}

function editTensor(values: Float32Array | undefined, neutral: number, n: number, C: number, what: string): ort.Tensor {
  if (!values) return new ort.Tensor('float32', new Float32Array(C).fill(neutral), [1, C, 1, 1]);
  if (values.length === C) return new ort.Tensor('float32', values, [1, C, 1, 1]);
  if (values.length === n * C) return new ort.Tensor('float32', values, [n, C, 1, 1]);
  throw new Error(`${what}: expected ${C} or ${n}×${C} values, got ${values.length}`);
}

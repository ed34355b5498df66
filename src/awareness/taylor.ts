// A first-order (Taylor) estimator of the ablation effect, for every channel of every CCBN at once.
//
// Zeroing channel k's post-ReLU map h_k changes the image by Δ ≈ −J_k h_k (J_k the Jacobian of the
// image w.r.t. h_k). For a Rademacher projection r of the image (±1 per output value), one backward pass
// gives g = Jᵀr at every CCBN's post-ReLU activation, and s_k = Σ_p h_kp·g_kp = rᵀ(J_k h_k). Since
// E_r[(rᵀv)²] = ‖v‖², T_k = √(mean over M probes of s_k²) estimates ‖J_k h_k‖₂ for all channels of all
// layers from M backward passes per image.
//
// The graph is the trunk of src/model/graph.ts (its nodes, unchanged) followed by a hand-written
// reverse pass over exactly those nodes: each forward op has its vector–Jacobian product below, and the
// gradient flows from the cotangent input `r` [B, 3, R, R] at `image` down to the first CCBN. Outputs
// `taylor{i}` = Σ_{h,w} act{i}·∂(r·image)/∂act{i}, shape [B, C_i], reduced inside the graph.
import * as ort from 'onnxruntime-node';
import type { onnx as OnnxNS } from 'onnx-proto';
import type { Architecture } from '../model/config.ts';
import { trunkSessionOptions, type Generator } from '../model/generator.ts';
import { actOutput, trunkGraph } from '../model/graph.ts';
import type { GraphBuilder } from '../model/onnx.ts';
import { sampleZ, uniformSource } from '../model/sampling.ts';
import type { GeneratorWeights } from '../model/weights.ts';

export const COTANGENT = 'r';
export const taylorOutput = (i: number) => `taylor${i}`;

type Node = OnnxNS.INodeProto;

function attr(node: Node, name: string): number | number[] | string | undefined {
  const a = node.attribute?.find((x) => x.name === name);
  if (!a) return undefined;
  if (a.ints && a.ints.length) return a.ints.map(Number);
  if (a.s && a.s.length) return new TextDecoder().decode(a.s);
  return a.i === undefined || a.i === null ? undefined : Number(a.i);
}

const FLOAT = 1; // ONNX TensorProto.FLOAT, for Cast

/**
 * Append to `g` the reverse pass over `forward` (its nodes, in topological order): the gradient of
 * r·image w.r.t. every post-ReLU CCBN activation act{i}, and the outputs taylor{i}. Only tensors that
 * depend on some act{i} carry gradients; everything upstream of the first CCBN (gen_z) is left alone.
 */
export function appendTaylorBackward(g: GraphBuilder, forward: readonly Node[], arch: Architecture): void {
  const seeds = arch.ccbns.map((c) => actOutput(c.index));
  const live = new Set<string>(seeds);
  for (const n of forward) if (n.input!.some((x) => live.has(x))) live.add(n.output![0]);
  if (!live.has('image')) throw new Error('taylor: the image does not depend on the CCBN activations');

  const R = arch.resolution;
  g.input(COTANGENT, ['B', 3, R, R]);
  const zero = g.weight('vjp.zero', [1], new Float32Array([0]));
  const one = g.weight('vjp.one', [1], new Float32Array([1]));
  const four = g.weight('vjp.four', [1], new Float32Array([4]));
  const axesHW = g.ints('vjp.axes_hw', [2, 3]);
  const scales2x = 'scales_2x'; // the trunk's nearest-2× Resize scales
  let consts = 0;
  const ints = (values: number[]) => g.ints(`vjp.ints_${consts++}`, values);
  let axesLast: string | undefined; // made on first use, so that graphs without attention hold no unused initializer

  const pending = new Map<string, string[]>();
  const total = new Map<string, string>();
  const push = (name: string, grad: string) => {
    if (!live.has(name)) return;
    const l = pending.get(name);
    if (l) l.push(grad);
    else pending.set(name, [grad]);
  };
  const gradOf = (name: string): string | undefined => {
    const l = pending.get(name);
    if (!l) return undefined;
    let s = l[0];
    for (const x of l.slice(1)) s = g.op('Add', [s, x]);
    total.set(name, s);
    return s;
  };
  const up2 = (t: string) =>
    g.op('Resize', [t, '', scales2x], { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' });
  const mask = (cond: string) => g.op('Cast', [cond], { to: FLOAT });
  const T = (t: string) => g.op('Transpose', [t], { perm: [0, 2, 1] });

  push('image', COTANGENT);
  for (let idx = forward.length - 1; idx >= 0; idx--) {
    const node = forward[idx];
    const y = node.output![0];
    if (!live.has(y)) continue;
    const dy = gradOf(y);
    if (!dy) continue; // a live tensor the image does not read (none in the trunk)
    const ins = node.input!;
    const x = ins[0];
    const op = node.opType!;
    switch (op) {
      case 'Conv': {
        for (const a of ['strides', 'dilations', 'group']) {
          const v = attr(node, a);
          if (v !== undefined && !(Array.isArray(v) ? v.every((e) => e === 1) : v === 1)) throw new Error(`taylor: Conv ${y} has ${a} ${v}`);
        }
        if (live.has(ins[1])) throw new Error(`taylor: Conv ${y} has a live weight`);
        // the transpose of a stride-1 convolution: same weight [out, in, k, k] read as [in_T, out_T, k, k]
        push(x, g.op('ConvTranspose', [dy, ins[1]], { kernel_shape: attr(node, 'kernel_shape') as number[], pads: attr(node, 'pads') as number[] }));
        break;
      }
      case 'Relu':
        push(x, g.op('Mul', [dy, mask(g.op('Greater', [x, zero]))]));
        break;
      case 'Add':
        // broadcasting only ever involves a non-live operand (shift, edit add), so live ones have dy's shape
        for (const a of ins) push(a, dy);
        break;
      case 'Mul': {
        const l = ins.filter((a) => live.has(a));
        if (l.length > 1) throw new Error(`taylor: Mul ${y} of two live tensors`);
        if (l.length === 1) push(l[0], g.op('Mul', [dy, ins[0] === l[0] ? ins[1] : ins[0]]));
        break;
      }
      case 'Resize':
        if (ins[2] !== scales2x || attr(node, 'mode') !== 'nearest') throw new Error(`taylor: unsupported Resize ${y}`);
        // nearest 2× upsample → 2×2 sum pooling
        push(x, g.op('Mul', [g.op('AveragePool', [dy], { kernel_shape: [2, 2], strides: [2, 2] }), four]));
        break;
      case 'Slice': {
        const [start] = g.intValues(ins[1]) ?? [];
        const [end] = g.intValues(ins[2]) ?? [];
        const [axis] = g.intValues(ins[3]) ?? [];
        if (start === undefined || end === undefined || axis === undefined || ins.length > 4 || start < 0 || end < 0) {
          throw new Error(`taylor: unsupported Slice ${y}`);
        }
        // zeros for the dropped channels: the shapes of the complementary slices of x
        const zerosOf = (s: number, e: number) => g.op('ConstantOfShape', [g.op('Shape', [g.op('Slice', [x, ints([s]), ints([e]), ints([axis])])])]);
        const parts = [dy, zerosOf(end, 2 ** 31 - 1)];
        if (start > 0) parts.unshift(zerosOf(0, start));
        push(x, g.op('Concat', parts, { axis }));
        break;
      }
      case 'MaxPool': {
        const k = attr(node, 'kernel_shape') as number[];
        const s = attr(node, 'strides') as number[];
        if (k.join() !== '2,2' || s.join() !== '2,2' || attr(node, 'pads') !== undefined) throw new Error(`taylor: unsupported MaxPool ${y}`);
        // route the gradient to the maximum of each window
        push(x, g.op('Mul', [up2(dy), mask(g.op('Equal', [x, up2(y)]))]));
        break;
      }
      case 'Reshape':
        push(x, g.op('Reshape', [dy, g.op('Shape', [x])]));
        break;
      case 'Transpose': {
        const perm = attr(node, 'perm') as number[];
        const inv = new Array<number>(perm.length);
        perm.forEach((p, i) => (inv[p] = i));
        push(x, g.op('Transpose', [dy], { perm: inv }));
        break;
      }
      case 'MatMul': {
        // batched [B, n, k]·[B, k, m] (the attention's)
        const [a, b] = ins;
        if (live.has(a)) push(a, g.op('MatMul', [dy, T(b)]));
        if (live.has(b)) push(b, g.op('MatMul', [T(a), dy]));
        break;
      }
      case 'Softmax': {
        if (attr(node, 'axis') !== -1) throw new Error(`taylor: Softmax ${y} not over the last axis`);
        const rowsum = g.op('ReduceSum', [g.op('Mul', [dy, y]), (axesLast ??= g.ints('vjp.axes_last', [-1]))], { keepdims: 1 });
        push(x, g.op('Mul', [y, g.op('Sub', [dy, rowsum])]));
        break;
      }
      case 'Tanh':
        push(x, g.op('Mul', [dy, g.op('Sub', [one, g.op('Mul', [y, y])])]));
        break;
      default:
        if (ins.some((a) => live.has(a))) throw new Error(`taylor: no backward rule for ${op} (${y})`);
    }
  }

  for (const spec of arch.ccbns) {
    const h = actOutput(spec.index);
    const gh = total.get(h);
    if (!gh) throw new Error(`taylor: no gradient reached ${h}`);
    g.op('ReduceSum', [g.op('Mul', [h, gh]), axesHW], { keepdims: 0 }, taylorOutput(spec.index));
    g.output(taylorOutput(spec.index), ['B', spec.channels]);
  }
}

/** The trunk and its reverse pass, encoded. */
export function buildTaylorGraph(arch: Architecture, w: GeneratorWeights): Uint8Array {
  const g = trunkGraph(arch, w);
  appendTaylorBackward(g, [...g.nodeList], arch);
  return g.encode();
}

const sessions = new WeakMap<Generator, Promise<ort.InferenceSession>>();

/** The generator's Taylor session, built on first use and cached. */
export function taylorSession(g: Generator): Promise<ort.InferenceSession> {
  let s = sessions.get(g);
  if (!s) {
    s = ort.InferenceSession.create(buildTaylorGraph(g.arch, g.weights), trunkSessionOptions(g.options));
    sessions.set(g, s);
  }
  return s;
}

export async function releaseTaylor(g: Generator): Promise<void> {
  const s = sessions.get(g);
  sessions.delete(g);
  if (s) await (await s).release();
}

/**
 * One batch: s_i[b, k] = Σ_p act{i}[b, k, p]·∂(r_b·image_b)/∂act{i}[b, k, p] for the given conditioning
 * (neutral edits) and cotangents r [n, 3, R, R]. CCBN index → [n, C_i].
 */
export async function taylorProducts(g: Generator, z: Float32Array, y: Float32Array, r: Float32Array, n: number, layers: number[], truncation: number): Promise<Map<number, Float32Array>> {
  const session = await taylorSession(g);
  const R = g.arch.resolution;
  if (r.length !== n * 3 * R * R) throw new Error(`taylor: expected ${n}×3×${R}×${R} cotangent values, got ${r.length}`);
  const feeds = g.trunkFeeds(g.conditioning(z, y, n), { truncation });
  feeds[COTANGENT] = new ort.Tensor('float32', r, [n, 3, R, R]);
  const out = await session.run(feeds, layers.map(taylorOutput));
  return new Map(layers.map((i) => [i, out[taylorOutput(i)].data as Float32Array]));
}

export interface TaylorOptions {
  truncation?: number;
  /** images (z) per class */
  samples?: number;
  /** Rademacher probes per image */
  probes?: number;
  seed?: number;
  /** rows (image × probe) per run */
  batch?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface TaylorStatistics {
  /** E_z √(mean_m s²): the expected per-image ‖J_k h_k‖₂ (the default estimator) */
  rms: Map<number, Float32Array>;
  /** E_z mean_m |s| (= √(2/π)·‖J_k h_k‖₂ for a Gaussian projection) */
  abs: Map<number, Float32Array>;
  /** √(E_z mean_m s²): root mean square over images and probes together */
  pooled: Map<number, Float32Array>;
}

/** All three reductions of the Taylor products, each layer index → [classes × C]. */
export async function taylorStatistics(g: Generator, classes: Float32Array[], layers: number[], opts: TaylorOptions = {}): Promise<TaylorStatistics> {
  const t = opts.truncation ?? 1;
  const S = opts.samples ?? 8;
  const M = opts.probes ?? 8;
  const seed = opts.seed ?? 0;
  const zd = g.config.z_dim;
  const nc = g.config.num_classes;
  const R = g.arch.resolution;
  const per = 3 * R * R;
  const rows = S * M;
  const batch = Math.max(1, opts.batch ?? 64);
  const make = () => new Map(layers.map((i) => [i, new Float32Array(classes.length * g.arch.ccbns[i].channels)]));
  const stats: TaylorStatistics = { rms: make(), abs: make(), pooled: make() };
  const runs = Math.ceil(rows / batch);
  let done = 0;
  for (let c = 0; c < classes.length; c++) {
    if (classes[c].length !== nc) throw new Error(`taylor: class vector ${c} has ${classes[c].length} values, expected ${nc}`);
    // the same z as the estimators draw for this class; row s·M + m is sample s under probe m
    const z = sampleZ(S, zd, t, seed + c);
    const u = uniformSource(Math.imul(seed + c + 1, 0x9e3779b1));
    const products = new Map(layers.map((i) => [i, new Float64Array(rows * g.arch.ccbns[i].channels)]));
    for (let r0 = 0; r0 < rows; r0 += batch) {
      const n = Math.min(rows, r0 + batch) - r0;
      const zz = new Float32Array(n * zd);
      const yy = new Float32Array(n * nc);
      const r = new Float32Array(n * per);
      for (let b = 0; b < n; b++) {
        const s = Math.floor((r0 + b) / M);
        zz.set(z.subarray(s * zd, (s + 1) * zd), b * zd);
        yy.set(classes[c], b * nc);
      }
      for (let q = 0; q < r.length; q++) r[q] = u() < 0.5 ? -1 : 1;
      const out = await taylorProducts(g, zz, yy, r, n, layers, t);
      for (const i of layers) products.get(i)!.set(out.get(i)!, r0 * g.arch.ccbns[i].channels);
      opts.onProgress?.(++done, classes.length * runs);
    }
    for (const i of layers) {
      const C = g.arch.ccbns[i].channels;
      const p = products.get(i)!;
      const rms = stats.rms.get(i)!;
      const abs = stats.abs.get(i)!;
      const pooled = stats.pooled.get(i)!;
      for (let k = 0; k < C; k++) {
        let sRms = 0;
        let sAbs = 0;
        let sSq = 0;
        for (let s = 0; s < S; s++) {
          let sq = 0;
          for (let m = 0; m < M; m++) {
            const v = p[(s * M + m) * C + k];
            sq += v * v;
            sAbs += Math.abs(v);
          }
          sRms += Math.sqrt(sq / M);
          sSq += sq;
        }
        rms[c * C + k] = sRms / S;
        abs[c * C + k] = sAbs / (S * M);
        pooled[c * C + k] = Math.sqrt(sSq / (S * M));
      }
    }
  }
  return stats;
}

/** Taylor estimate of the ablation effect, E_z √(mean_m s²), per layer: [classes × C]. */
export async function taylorEffect(g: Generator, classes: Float32Array[], layers: number[], opts: TaylorOptions = {}): Promise<Map<number, Float32Array>> {
  return (await taylorStatistics(g, classes, layers, opts)).rms;
}

// The convolution trunk of BigGAN-deep as an ONNX graph. All conditioning arrives as inputs:
//   cond            [B, 2·z_dim]     feeds gen_z
//   bn{i}.scale/shift [B, C, 1, 1]   CCBN i folded with its truncation statistics (x·scale + shift)
//   bn{i}.mul/add   [E, C, 1, 1]     applied after CCBN i's ReLU (E = 1 or B); neutral is 1 / 0
//   final.scale/shift [1, C, 1, 1]   the final, unconditional BN
// Outputs: `image` [B, 3, R, R] and `act{i}` = CCBN i's post-ReLU (post-edit) activation, fetched on request.
import type { Architecture, AttentionSpec, GenBlockSpec } from './config.ts';
import { GraphBuilder } from './onnx.ts';
import type { AttentionWeights, BlockWeights, GeneratorWeights, Weight } from './weights.ts';

export const ccbnInputs = (i: number) => ({ scale: `bn${i}.scale`, shift: `bn${i}.shift`, mul: `bn${i}.mul`, add: `bn${i}.add` });
export const actOutput = (i: number) => `act${i}`;

export interface TrunkOptions {
  /** declare every act{i} as a graph output (default true). A graph output can't share memory with
   *  later tensors, so a graph that is only asked for images is leaner without them. */
  activationOutputs?: boolean;
}

export function buildTrunk(arch: Architecture, w: GeneratorWeights, opts: TrunkOptions = {}): Uint8Array {
  return trunkGraph(arch, w, opts).encode();
}

/** The trunk's nodes in a builder, not yet encoded (src/awareness/taylor.ts appends its backward pass). */
export function trunkGraph(arch: Architecture, w: GeneratorWeights, opts: TrunkOptions = {}): GraphBuilder {
  const exposeActivations = opts.activationOutputs ?? true;
  const g = new GraphBuilder();
  const scales2x = 'scales_2x';
  g.weight(scales2x, [4], new Float32Array([1, 1, 2, 2]));

  const conv = (x: string, wt: Weight, name: string, pad: number) => {
    const inputs = [x, g.weight(`${name}.w`, [wt.out, wt.in, wt.k, wt.k], wt.data)];
    if (wt.bias) inputs.push(g.weight(`${name}.b`, [wt.out], wt.bias));
    return g.op('Conv', inputs, { kernel_shape: [wt.k, wt.k], pads: [pad, pad, pad, pad] });
  };
  const upsample = (x: string) =>
    g.op('Resize', [x, '', scales2x], { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' });

  /** CCBN i (folded) → ReLU → per-channel edit; the result is named act{i} (and exposed as an output if asked). */
  const ccbn = (x: string, i: number, C: number) => {
    const n = ccbnInputs(i);
    g.input(n.scale, ['B', C, 1, 1]);
    g.input(n.shift, ['B', C, 1, 1]);
    g.input(n.mul, ['E', C, 1, 1]);
    g.input(n.add, ['E', C, 1, 1]);
    const h = g.op('Relu', [g.op('Add', [g.op('Mul', [x, n.scale]), n.shift])]);
    const out = g.op('Add', [g.op('Mul', [h, n.mul]), n.add], {}, actOutput(i));
    const res = arch.ccbns[i].res;
    if (exposeActivations) g.output(out, ['B', C, res, res]);
    return out;
  };

  const block = (x: string, spec: GenBlockSpec, bw: BlockWeights) => {
    const p = `layers.${spec.module}`;
    const first = spec.block * 4;
    let h = conv(ccbn(x, first, spec.cin), bw.conv[0], `${p}.conv_0`, 0);
    h = ccbn(h, first + 1, spec.mid);
    if (spec.up) h = upsample(h);
    h = conv(h, bw.conv[1], `${p}.conv_1`, 1);
    h = conv(ccbn(h, first + 2, spec.mid), bw.conv[2], `${p}.conv_2`, 1);
    h = conv(ccbn(h, first + 3, spec.mid), bw.conv[3], `${p}.conv_3`, 0);
    let skip = x;
    if (spec.cin !== spec.cout) {
      // the reference keeps the FIRST half of the input channels
      skip = g.op('Slice', [skip, g.ints(`${p}.keep_start`, [0]), g.ints(`${p}.keep_end`, [spec.cin / 2]), g.ints(`${p}.keep_axis`, [1])]);
    }
    if (spec.up) skip = upsample(skip);
    return g.op('Add', [h, skip]);
  };

  const attention = (x: string, spec: AttentionSpec, aw: AttentionWeights) => {
    const C = spec.channels;
    const p = `layers.${spec.module}`;
    const pool = (t: string) => g.op('MaxPool', [t], { kernel_shape: [2, 2], strides: [2, 2] });
    const flat = (t: string, c: number, name: string) => g.op('Reshape', [t, g.ints(name, [0, c, -1])]);
    const theta = flat(conv(x, aw.theta, `${p}.theta`, 0), C / 8, `${p}.shape_theta`);
    const phi = flat(pool(conv(x, aw.phi, `${p}.phi`, 0)), C / 8, `${p}.shape_phi`);
    // softmax over the N/4 pooled keys, without 1/sqrt(d) scaling, as in BigGAN
    const attn = g.op('Softmax', [g.op('MatMul', [g.op('Transpose', [theta], { perm: [0, 2, 1] }), phi])], { axis: -1 });
    const gv = flat(pool(conv(x, aw.g, `${p}.g`, 0)), C / 2, `${p}.shape_g`);
    const o = g.op('MatMul', [gv, g.op('Transpose', [attn], { perm: [0, 2, 1] })]);
    const o4 = g.op('Reshape', [o, g.ints(`${p}.shape_o`, [0, C / 2, spec.res, spec.res])]);
    const gamma = g.weight(`${p}.gamma`, [1], new Float32Array([aw.gamma]));
    return g.op('Add', [x, g.op('Mul', [conv(o4, aw.o, `${p}.o_conv`, 0), gamma])]);
  };

  // gen_z, then the TF (NHWC) reshape and a transpose to NCHW
  const C0 = 16 * arch.config.channel_width;
  g.input('cond', ['B', arch.condDim]);
  const z = g.op('Gemm', ['cond', g.weight('gen_z.w', [w.genZ.out, w.genZ.in], w.genZ.data), g.weight('gen_z.b', [w.genZ.out], w.genZ.bias!)], { transB: 1 });
  let h = g.op('Transpose', [g.op('Reshape', [z, g.ints('gen_z.shape', [-1, 4, 4, C0])])], { perm: [0, 3, 1, 2] });

  for (const m of arch.modules) {
    h = m.kind === 'attention' ? attention(h, m, w.attention!) : block(h, m, w.blocks[m.block]);
  }

  // final BN → ReLU → conv_to_rgb restricted to the 3 channels the reference keeps (σ came from the full weight)
  const C = arch.outChannels;
  g.input('final.scale', [1, C, 1, 1]);
  g.input('final.shift', [1, C, 1, 1]);
  h = g.op('Relu', [g.op('Add', [g.op('Mul', [h, 'final.scale']), 'final.shift'])]);
  const rgb: Weight = { ...w.toRgb, out: 3, data: w.toRgb.data.subarray(0, 3 * C * 9), bias: w.toRgb.bias!.subarray(0, 3) };
  g.op('Tanh', [conv(h, rgb, 'conv_to_rgb', 1)], {}, 'image');
  g.output('image', ['B', 3, arch.resolution, arch.resolution]);
  return g;
}

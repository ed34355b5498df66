// From a state_dict to the numbers the generator needs, checked against the config.
// Spectral norm is applied once, as the reference does in eval mode: W = W_orig / (u · W_orig v).
import type { StateDict, Tensor } from '../io/tensor.ts';
import { shapeString } from '../io/tensor.ts';
import type { Architecture } from './config.ts';

/** Row-major weight of a linear layer [out, in] or a conv [out, in, k, k]. */
export interface Weight {
  data: Float32Array;
  out: number;
  in: number;
  k: number;
  bias?: Float32Array;
}

export interface CcbnWeights {
  scale: Weight;
  offset: Weight;
  /** [n_stats, C] */
  means: Float32Array;
  vars: Float32Array;
  channels: number;
}

export interface BlockWeights {
  bn: CcbnWeights[];
  conv: Weight[];
}

export interface AttentionWeights {
  theta: Weight;
  phi: Weight;
  g: Weight;
  o: Weight;
  gamma: number;
}

export interface GeneratorWeights {
  /** embeddings.weight [z_dim, num_classes] */
  embed: Float32Array;
  genZ: Weight;
  blocks: BlockWeights[];
  attention?: AttentionWeights;
  finalBn: { weight: Float32Array; bias: Float32Array; means: Float32Array; vars: Float32Array };
  toRgb: Weight;
}

/** Every key the architecture needs, with its shape, in module order. */
export function expectedKeys(arch: Architecture): Map<string, number[]> {
  const { config: c, condDim } = arch;
  const keys = new Map<string, number[]>();
  const sn = (p: string, out: number, inn: number, k = 0, bias = true) => {
    if (bias) keys.set(`${p}.bias`, [out]);
    keys.set(`${p}.weight_orig`, k ? [out, inn, k, k] : [out, inn]);
    keys.set(`${p}.weight_u`, [out]);
    keys.set(`${p}.weight_v`, [inn * (k ? k * k : 1)]);
  };
  keys.set('embeddings.weight', [c.z_dim, c.num_classes]);
  sn('generator.gen_z', 16 * 16 * c.channel_width, condDim);
  for (const m of arch.modules) {
    const p = `generator.layers.${m.module}`;
    if (m.kind === 'attention') {
      const C = m.channels;
      keys.set(`${p}.gamma`, [1]);
      sn(`${p}.snconv1x1_theta`, C / 8, C, 1, false);
      sn(`${p}.snconv1x1_phi`, C / 8, C, 1, false);
      sn(`${p}.snconv1x1_g`, C / 2, C, 1, false);
      sn(`${p}.snconv1x1_o_conv`, C, C / 2, 1, false);
      continue;
    }
    for (let j = 0; j < 4; j++) {
      const C = j === 0 ? m.cin : m.mid;
      keys.set(`${p}.bn_${j}.running_means`, [c.n_stats, C]);
      keys.set(`${p}.bn_${j}.running_vars`, [c.n_stats, C]);
      sn(`${p}.bn_${j}.scale`, C, condDim, 0, false);
      sn(`${p}.bn_${j}.offset`, C, condDim, 0, false);
    }
    sn(`${p}.conv_0`, m.mid, m.cin, 1);
    sn(`${p}.conv_1`, m.mid, m.mid, 3);
    sn(`${p}.conv_2`, m.mid, m.mid, 3);
    sn(`${p}.conv_3`, m.cout, m.mid, 1);
  }
  const C = arch.outChannels;
  keys.set('generator.bn.weight', [C]);
  keys.set('generator.bn.bias', [C]);
  keys.set('generator.bn.running_means', [c.n_stats, C]);
  keys.set('generator.bn.running_vars', [c.n_stats, C]);
  sn('generator.conv_to_rgb', C, C, 3);
  return keys;
}

const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((v, i) => v === b[i]);

/** Throw naming the first key that differs between the config's architecture and the weights. */
export function checkKeys(arch: Architecture, sd: StateDict): void {
  const expected = expectedKeys(arch);
  for (const [key, shape] of expected) {
    const t = sd.get(key);
    if (!t) throw new Error(`config does not match weights: key ${key} ${shapeString(shape)} is missing from the weights`);
    if (!sameShape(t.shape, shape)) {
      throw new Error(`config does not match weights: ${key} has shape ${shapeString(t.shape)} in the weights, the config implies ${shapeString(shape)}`);
    }
  }
  for (const key of sd.keys()) {
    if ((key.startsWith('generator.') || key.startsWith('embeddings.')) && !expected.has(key)) {
      throw new Error(`config does not match weights: the weights have ${key}, which the config's architecture does not`);
    }
  }
}

/** sigma = u · (W v), accumulated in float64 (the reference does it in float32; the difference is ~1e-7). */
export function spectralSigma(w: Float32Array, u: Float32Array, v: Float32Array): number {
  const out = u.length;
  const inn = v.length;
  let sigma = 0;
  for (let o = 0; o < out; o++) {
    let row = 0;
    const base = o * inn;
    for (let i = 0; i < inn; i++) row += w[base + i] * v[i];
    sigma += u[o] * row;
  }
  return sigma;
}

function snWeight(sd: StateDict, p: string, hasBias: boolean): Weight {
  const orig = sd.get(`${p}.weight_orig`) as Tensor;
  const sigma = spectralSigma(orig.data, sd.get(`${p}.weight_u`)!.data, sd.get(`${p}.weight_v`)!.data);
  if (!Number.isFinite(sigma) || sigma === 0) throw new Error(`${p}: spectral norm is ${sigma}; the weights are corrupt`);
  const data = new Float32Array(orig.data.length);
  for (let i = 0; i < data.length; i++) data[i] = orig.data[i] / sigma;
  const [out, inn, k = 1] = orig.shape;
  return { data, out, in: inn, k, bias: hasBias ? sd.get(`${p}.bias`)!.data : undefined };
}

function ccbn(sd: StateDict, p: string, channels: number): CcbnWeights {
  return {
    scale: snWeight(sd, `${p}.scale`, false),
    offset: snWeight(sd, `${p}.offset`, false),
    means: sd.get(`${p}.running_means`)!.data,
    vars: sd.get(`${p}.running_vars`)!.data,
    channels,
  };
}

/** Check the state_dict against the architecture and fold spectral norm into every weight. */
export function extractWeights(arch: Architecture, sd: StateDict): GeneratorWeights {
  checkKeys(arch, sd);
  const blocks: BlockWeights[] = [];
  let attention: AttentionWeights | undefined;
  for (const m of arch.modules) {
    const p = `generator.layers.${m.module}`;
    if (m.kind === 'attention') {
      attention = {
        theta: snWeight(sd, `${p}.snconv1x1_theta`, false),
        phi: snWeight(sd, `${p}.snconv1x1_phi`, false),
        g: snWeight(sd, `${p}.snconv1x1_g`, false),
        o: snWeight(sd, `${p}.snconv1x1_o_conv`, false),
        gamma: sd.get(`${p}.gamma`)!.data[0],
      };
      continue;
    }
    blocks.push({
      bn: [0, 1, 2, 3].map((j) => ccbn(sd, `${p}.bn_${j}`, j === 0 ? m.cin : m.mid)),
      conv: [0, 1, 2, 3].map((j) => snWeight(sd, `${p}.conv_${j}`, true)),
    });
  }
  return {
    embed: sd.get('embeddings.weight')!.data,
    genZ: snWeight(sd, 'generator.gen_z', true),
    blocks,
    attention,
    finalBn: {
      weight: sd.get('generator.bn.weight')!.data,
      bias: sd.get('generator.bn.bias')!.data,
      means: sd.get('generator.bn.running_means')!.data,
      vars: sd.get('generator.bn.running_vars')!.data,
    },
    toRgb: snWeight(sd, 'generator.conv_to_rgb', true),
  };
}

// BigGAN-deep config.json (the reference port's fields) and the architecture it implies.
// Names follow the checkpoint: `generator.layers.L` is module L, counting the attention module;
// "block b" (the paper's layer numbering) counts GenBlocks only.

export interface BigGANConfig {
  z_dim: number;
  class_embed_dim: number;
  channel_width: number;
  num_classes: number;
  /** one row per GenBlock: [up_sample, in_multiplier, out_multiplier] */
  layers: [boolean, number, number][];
  attention_layer_position: number;
  eps: number;
  n_stats: number;
  output_dim: number;
}

export interface GenBlockSpec {
  kind: 'block';
  /** index in generator.layers (attention counted) */
  module: number;
  /** GenBlock number, attention not counted (the paper's "layer") */
  block: number;
  up: boolean;
  cin: number;
  mid: number;
  cout: number;
  /** spatial size of the block's input */
  res: number;
}

export interface AttentionSpec {
  kind: 'attention';
  module: number;
  channels: number;
  res: number;
}

export interface CcbnSpec {
  /** module path in the checkpoint, e.g. generator.layers.6.bn_2 */
  name: string;
  /** position in the list of all CCBNs (4 per GenBlock) */
  index: number;
  block: number;
  module: number;
  /** 0..3: bn_0 normalises the block input, bn_1..bn_3 the bottleneck */
  j: number;
  channels: number;
  /** spatial size at which the CCBN runs */
  res: number;
}

export interface Architecture {
  config: BigGANConfig;
  condDim: number;
  modules: (GenBlockSpec | AttentionSpec)[];
  blocks: GenBlockSpec[];
  ccbns: CcbnSpec[];
  /** channels of the final feature map (final BN and conv_to_rgb) */
  outChannels: number;
  resolution: number;
}

const REQUIRED: (keyof BigGANConfig)[] = ['z_dim', 'channel_width', 'num_classes', 'layers', 'attention_layer_position'];

/** Validate a parsed config.json; defaults follow the reference BigGANConfig. */
export function parseConfig(raw: unknown, source = 'config.json'): BigGANConfig {
  if (typeof raw !== 'object' || raw === null) throw new Error(`${source}: expected a JSON object`);
  const r = raw as Record<string, unknown>;
  for (const k of REQUIRED) if (!(k in r)) throw new Error(`${source}: missing field "${k}"`);
  const int = (k: string, v: unknown, min = 1) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new Error(`${source}: "${k}" must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
    return v;
  };
  const layers = r.layers;
  if (!Array.isArray(layers) || layers.length === 0) throw new Error(`${source}: "layers" must be a non-empty list`);
  const parsedLayers = layers.map((l, i): [boolean, number, number] => {
    if (!Array.isArray(l) || l.length !== 3 || typeof l[0] !== 'boolean') throw new Error(`${source}: layers[${i}] must be [up_sample, in_mult, out_mult]`);
    return [l[0], int(`layers[${i}][1]`, l[1]), int(`layers[${i}][2]`, l[2])];
  });
  const cfg: BigGANConfig = {
    z_dim: int('z_dim', r.z_dim),
    class_embed_dim: int('class_embed_dim', r.class_embed_dim ?? r.z_dim),
    channel_width: int('channel_width', r.channel_width),
    num_classes: int('num_classes', r.num_classes),
    layers: parsedLayers,
    attention_layer_position: int('attention_layer_position', r.attention_layer_position, 0),
    eps: typeof r.eps === 'number' && r.eps > 0 ? r.eps : 1e-4,
    n_stats: int('n_stats', r.n_stats ?? 51, 2),
    output_dim: int('output_dim', r.output_dim ?? 0, 0),
  };
  architecture(cfg, source); // throws on impossible shapes
  return cfg;
}

/** Derive every module's channels and resolution from the config, as the reference Generator does. */
export function architecture(config: BigGANConfig, source = 'config'): Architecture {
  const ch = config.channel_width;
  const modules: (GenBlockSpec | AttentionSpec)[] = [];
  const blocks: GenBlockSpec[] = [];
  const ccbns: CcbnSpec[] = [];
  let res = 4;
  let channels = 16 * ch; // gen_z always produces 4×4×16ch
  config.layers.forEach(([up, inMult, outMult], b) => {
    const cin = ch * inMult;
    const cout = ch * outMult;
    if (cin !== channels) throw new Error(`${source}: layers[${b}] takes ${cin} channels but receives ${channels}`);
    if (cin !== cout && cout !== cin / 2) throw new Error(`${source}: layers[${b}] changes channels ${cin}→${cout}; BigGAN-deep can only keep or halve them`);
    if (cin % 4 !== 0) throw new Error(`${source}: layers[${b}] has ${cin} channels, not divisible by 4`);
    if (b === config.attention_layer_position) {
      if (cin % 8 !== 0) throw new Error(`${source}: attention needs channels divisible by 8, got ${cin}`);
      modules.push({ kind: 'attention', module: modules.length, channels: cin, res });
    }
    const spec: GenBlockSpec = { kind: 'block', module: modules.length, block: b, up, cin, mid: cin / 4, cout, res };
    modules.push(spec);
    blocks.push(spec);
    for (let j = 0; j < 4; j++) {
      ccbns.push({
        name: `generator.layers.${spec.module}.bn_${j}`, index: ccbns.length, block: b, module: spec.module, j,
        channels: j === 0 ? cin : cin / 4, res: j >= 2 && up ? res * 2 : res,
      });
    }
    if (up) res *= 2;
    channels = cout;
  });
  if (channels !== ch) throw new Error(`${source}: the last layer must end with ${ch} channels (channel_width), it ends with ${channels}`);
  return { config, condDim: 2 * config.z_dim, modules, blocks, ccbns, outChannels: ch, resolution: res };
}

/**
 * Find a CCBN by the names users type: a number is a GenBlock counted without the attention module and
 * means that block's first CCBN (the paper's "layer l"); `b.j` picks bn_j of block b; a module path
 * (`generator.layers.6.bn_2` or `layers.6.bn_2`) names any CCBN.
 */
export function findCcbn(arch: Architecture, name: string): CcbnSpec {
  const t = name.trim();
  let found: CcbnSpec | undefined;
  if (/^\d+$/.test(t)) found = arch.ccbns.find((c) => c.block === Number(t) && c.j === 0);
  else if (/^\d+\.\d$/.test(t)) {
    const [b, j] = t.split('.').map(Number);
    found = arch.ccbns.find((c) => c.block === b && c.j === j);
  } else {
    const path = t.startsWith('generator.') ? t : `generator.${t}`;
    found = arch.ccbns.find((c) => c.name === path);
  }
  if (!found) {
    throw new Error(`unknown layer "${name}": use a GenBlock number 0–${arch.blocks.length - 1}, "block.j" (e.g. 3.2), or a module path such as ${arch.ccbns[1]?.name}`);
  }
  return found;
}

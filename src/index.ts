// channel-awareness: the public API. Data flows io → model → awareness → apps.

// io: checkpoints, arrays, pictures, the download cache
export { readCheckpoint, readCheckpointBytes, detectFormat } from './io/checkpoint.ts';
export { readNpy, writeNpy } from './io/npy.ts';
export { writeSafetensors, writeTorchZip, writeTorchLegacy } from './io/writers.ts';
export { gridRgb, writeRgbImage } from './io/images.ts';
export type { Tensor, StateDict } from './io/tensor.ts';

// model: BigGAN-deep on onnxruntime, conditioning in TypeScript
export { parseConfig, architecture, findCcbn } from './model/config.ts';
export type { BigGANConfig, Architecture, CcbnSpec, GenBlockSpec } from './model/config.ts';
export { Generator, checkTruncation } from './model/generator.ts';
export type { ChannelEdit, ForwardOptions, ForwardResult } from './model/generator.ts';
export type { Conditioning } from './model/conditioning.ts';
export { loadModel, openGenerator, resolveModelFiles, DEFAULT_MODEL_DIR } from './model/load.ts';
export { generate } from './model/sample.ts';
export { sampleZ, oneHot } from './model/sampling.ts';
export { ClassSpace, parseClassSpec } from './model/classes.ts';
export { randomStateDict, publishedConfig } from './model/random.ts';

// awareness: per-class, per-layer, per-channel scores, their validating estimators and analyses
export { computeAwareness, withScores, allClasses, DEFINITIONS } from './awareness/compute.ts';
export type { Awareness, LayerAwareness, AwarenessOptions, Definition, Variant } from './awareness/compute.ts';
export { taylorEffect, taylorStatistics } from './awareness/taylor.ts';
export { empiricalMoments, empiricalActivation, ablationEffect } from './awareness/estimators.ts';
export { validateAwareness } from './awareness/validate.ts';
export { computeFindings } from './awareness/findings.ts';
export { topK, coreChannels, sharedChannels, cosineMatrix, overlapMatrix, nearestClasses, totals, spearman, concentrationCurve } from './awareness/analyses.ts';
export { saveAwareness } from './awareness/save.ts';

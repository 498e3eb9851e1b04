export { buildVjpModel, SUPPORTED_OPS, MIN_TARGET_OPSET, TRANSFORM_VERSION, type ProxyGraph, type VjpOptions } from './vjp.ts';
export { GradientModel, ProxyGradModel, buildVjpModelCached, gradientModelKey, finiteDifferenceCheck, gradCheck, type GradientModelOptions, type GradCheckOptions, type GradCheckResult } from './runtime.ts';
export { UnsupportedOperatorError, OnnxGradError } from './errors.ts';
export { makeModel, makeNode } from './proto.ts';
export { aggregateProfile, profileModel, type OpTime } from './profile.ts';

export { buildVjpModel, SUPPORTED_OPS, MIN_TARGET_OPSET, type VjpOptions } from './vjp.ts';
export { GradientModel, buildVjpModelCached, gradCheck, measureGradError, type GradientModelOptions, type GradCheckOptions, type GradCheckResult } from './runtime.ts';
export { UnsupportedOperatorError, OnnxGradError } from './errors.ts';
export { makeModel, makeNode } from './proto.ts';

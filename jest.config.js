/** Jest runs the TypeScript sources as native ESM through SWC (no separate build). */
export default {
  testEnvironment: './test/helpers/ort-env.cjs', // node env sharing typed arrays with onnxruntime
  extensionsToTreatAsEsm: ['.ts'],
  transform: {
    '^.+\\.ts$': ['@swc/jest', { jsc: { parser: { syntax: 'typescript' }, target: 'es2022' }, module: { type: 'es6' } }],
  },
  testMatch: ['<rootDir>/test/**/*.test.ts'],
  testTimeout: 120000,
};

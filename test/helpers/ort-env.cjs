/**
 * Jest environment for tests that run onnxruntime-node. Jest's vm sandbox has its own typed-array
 * constructors, while the native addon returns tensors built on the outer realm's; onnxruntime-common's
 * `instanceof Float32Array` check then fails ("A float32 tensor's data must be type of …").
 * Sharing the outer realm's typed-array constructors with the sandbox fixes that.
 * Use with a docblock at the top of the test file:  /** @jest-environment ./test/helpers/ort-env.cjs *\/
 */
const { TestEnvironment } = require('jest-environment-node');

const TYPED = ['Float32Array', 'Float64Array', 'Int8Array', 'Uint8Array', 'Uint8ClampedArray', 'Int16Array', 'Uint16Array',
  'Int32Array', 'Uint32Array', 'BigInt64Array', 'BigUint64Array'];

class OrtEnvironment extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    for (const k of TYPED) this.global[k] = globalThis[k];
  }
}
module.exports = OrtEnvironment;

/** Errors raised by the ONNX gradient transform. */
export class OnnxGradError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OnnxGradError';
  }
}

/** A node on the input→output path whose operator (or operator configuration) has no adjoint here. */
export class UnsupportedOperatorError extends OnnxGradError {
  constructor(public readonly opType: string, public readonly nodeName: string, detail?: string) {
    super(`unsupported operator ${opType} (node "${nodeName}")${detail ? `: ${detail}` : ''}`);
    this.name = 'UnsupportedOperatorError';
  }
}

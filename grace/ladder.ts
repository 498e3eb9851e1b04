/**
 * Rate selection from the Grace++ ladder: per frame, the highest-quality rung whose expected size
 * fits the target bitrate. Expected size = the rung's profiled bytes per pixel (grace/models/
 * ladder.json, measured by bench:grace) × a scene factor learnt online from the frames actually
 * coded (EMA of observed / profiled bytes), so a busy scene moves down the ladder.
 */
export class RateSelector {
  private scene = 1;

  /** bitsPerPixel[r]: profiled size of rung r (lowest rate first) */
  constructor(private readonly bitsPerPixel: readonly number[], private readonly alpha = 0.3) {
    if (bitsPerPixel.length === 0 || bitsPerPixel.some((b) => !(b > 0))) throw new RangeError('ladder profile needs a positive rate per rung');
  }

  /** Rung for the next frame at `targetKbps` and `fps` (frames of width×height). */
  pick(targetKbps: number, fps: number, width: number, height: number): number {
    const budgetBits = (targetKbps * 1000) / fps;
    let rung = 0;
    for (let r = 0; r < this.bitsPerPixel.length; r++) if (this.bitsPerPixel[r] * width * height * this.scene <= budgetBits) rung = r;
    return rung;
  }

  /** Feed back the size a frame really had. */
  observe(rung: number, bytes: number, width: number, height: number): void {
    const ratio = (bytes * 8) / (this.bitsPerPixel[rung] * width * height);
    if (Number.isFinite(ratio) && ratio > 0) this.scene = (1 - this.alpha) * this.scene + this.alpha * ratio;
  }

  get sceneFactor(): number {
    return this.scene;
  }
}

// Audio out: a streaming player on Web Audio (AudioWorklet fed chunk by chunk) and WAV encoding.

export class Player {
  constructor(sampleRate) { this.sampleRate = sampleRate; this.ctx = null; this.listeners = {}; }

  // call from a user gesture (Speak): browsers only start audio after one
  async start() {
    if (!this.ctx || this.ctx.sampleRate !== this.sampleRate) {
      this.ctx = new AudioContext({ sampleRate: this.sampleRate, latencyHint: 'interactive' });
      await this.ctx.audioWorklet.addModule(new URL('./worklet.js', import.meta.url));
      this.node = new AudioWorkletNode(this.ctx, 'stream-player', { outputChannelCount: [1] });
      this.node.connect(this.ctx.destination);
      this.node.port.onmessage = ({ data }) => this.listeners[data.type]?.(data);
    }
    await this.ctx.resume();
    this.node.port.postMessage({ type: 'clear' });
  }

  on(type, fn) { this.listeners[type] = fn; }
  push(samples) { this.node.port.postMessage({ type: 'chunk', samples }, [samples.buffer]); }
  end() { this.node?.port.postMessage({ type: 'end' }); }
  stop() { this.node?.port.postMessage({ type: 'clear' }); }
}

/** mono float32 -> 16-bit PCM WAV Blob */
export function wavBlob(samples, sampleRate) {
  const buf = new ArrayBuffer(44 + samples.length * 2);
  const v = new DataView(buf);
  const str = (at, s) => [...s].forEach((c, i) => v.setUint8(at + i, c.charCodeAt(0)));
  str(0, 'RIFF'); v.setUint32(4, 36 + samples.length * 2, true); str(8, 'WAVE');
  str(12, 'fmt '); v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
  v.setUint32(24, sampleRate, true); v.setUint32(28, sampleRate * 2, true);
  v.setUint16(32, 2, true); v.setUint16(34, 16, true);
  str(36, 'data'); v.setUint32(40, samples.length * 2, true);
  samples.forEach((x, i) => v.setInt16(44 + i * 2, Math.max(-1, Math.min(1, x)) * 0x7fff, true));
  return new Blob([buf], { type: 'audio/wav' });
}

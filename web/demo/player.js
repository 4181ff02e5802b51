// The demo's audio out: a streaming player on Web Audio (an AudioWorklet fed chunk by chunk).

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

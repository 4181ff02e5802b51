// AudioWorklet player: plays the chunks it is sent back to back, so the stream has no gaps unless
// generation falls behind (an underrun, counted and reported). Runs on the audio thread.
class StreamPlayer extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = []; this.offset = 0; this.started = false; this.ended = false; this.underruns = 0;
    this.played = 0;
    this.port.onmessage = ({ data }) => {
      if (data.type === 'chunk') this.queue.push(data.samples);
      else if (data.type === 'end') this.ended = true;
      else if (data.type === 'clear') { this.queue = []; this.offset = 0; this.started = false; this.ended = false; this.played = 0; }
    };
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    let i = 0;
    while (i < out.length && this.queue.length) {
      const head = this.queue[0];
      const n = Math.min(out.length - i, head.length - this.offset);
      out.set(head.subarray(this.offset, this.offset + n), i);
      i += n; this.offset += n; this.played += n;
      if (this.offset === head.length) { this.queue.shift(); this.offset = 0; }
      if (!this.started) { this.started = true; this.port.postMessage({ type: 'started', time: currentTime }); }
    }
    if (i < out.length) {
      out.fill(0, i);
      if (this.started && !this.ended && i > 0) this.underruns++;
      if (this.started && this.ended) {
        this.port.postMessage({ type: 'ended', played: this.played, underruns: this.underruns });
        this.started = false; this.ended = false; this.underruns = 0; this.played = 0;
      }
    }
    return true;
  }
}
registerProcessor('stream-player', StreamPlayer);

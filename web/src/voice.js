// Voice prompt audio in: any format the browser decodes -> mono float32 at the codec rate, with the
// same checks as voxport/runtime/audio.py (too short, too long for the context, silent, undecodable).

export const MIN_SECONDS = 0.5;
export const SILENCE_RMS = 1e-4;

export class VoiceError extends Error {
  constructor(message) { super(message); this.name = 'VoiceError'; }
}

/** bytes (ArrayBuffer) -> Float32Array at sampleRate; maxSeconds from the model's context. */
export async function prepareVoice(bytes, name, sampleRate, maxSeconds) {
  // a context at the codec rate decodes straight to it (a file already at that rate is untouched)
  const ctx = new OfflineAudioContext(1, 1, sampleRate);
  let buffer;
  try {
    buffer = await ctx.decodeAudioData(bytes);
  } catch {
    throw new VoiceError(`${name}: unsupported or damaged audio; the browser could not decode it (try WAV or MP3)`);
  }
  const mono = new Float32Array(buffer.length);
  for (let c = 0; c < buffer.numberOfChannels; c++) {
    const ch = buffer.getChannelData(c);
    for (let i = 0; i < ch.length; i++) mono[i] += ch[i] / buffer.numberOfChannels;
  }
  const seconds = mono.length / sampleRate;
  if (seconds < MIN_SECONDS) {
    throw new VoiceError(`${name}: voice prompt is ${seconds.toFixed(2)} s; at least ${MIN_SECONDS} s is needed`);
  }
  if (seconds > maxSeconds) {
    throw new VoiceError(`${name}: voice prompt is ${seconds.toFixed(1)} s; at most ${maxSeconds.toFixed(1)} s fits ` +
      "this model's context with room to speak");
  }
  const rms = Math.sqrt(mono.reduce((a, x) => a + x * x, 0) / mono.length);
  if (rms < SILENCE_RMS) throw new VoiceError(`${name}: voice prompt is silent (RMS below ${SILENCE_RMS})`);
  return mono;
}

/** Record from the microphone until stop() is called; resolves to the recording's bytes. */
export async function record() {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  const rec = new MediaRecorder(stream);
  const parts = [];
  rec.ondataavailable = (e) => parts.push(e.data);
  const done = new Promise((resolve) => {
    rec.onstop = async () => {
      stream.getTracks().forEach((t) => t.stop());
      resolve(await new Blob(parts, { type: rec.mimeType }).arrayBuffer());
    };
  });
  rec.start();
  return { stop: () => { rec.stop(); return done; } };
}

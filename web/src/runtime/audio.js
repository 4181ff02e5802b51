// Audio out (voxport/runtime/audio.py): float32 PCM -> 16-bit samples exactly as Python's pcm16 (and
// libsndfile's PCM_16 WAV) round them, and a WAV file of them. Audio in (a voice clip) is decoded by
// the environment: the browser's decodeAudioData, or 16-bit / float WAV bytes (readWav) in Node.
import { InputError } from './errors.js';

export const MIN_SECONDS = 0.5;
export const SILENCE_RMS = 1e-4;

// Math.round rounds halves up; numpy's rint (and libsndfile's lrint) to even
function rint(x) {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** float32 -> Int16Array as Python's pcm16: to 32 bits (x * 2^31, rounded to even, clipped), then the
 * top 16 bits (floor division by 65536), so raw PCM equals the samples of the WAV Python writes. */
export function pcm16(pcm) {
  const out = new Int16Array(pcm.length);
  for (let i = 0; i < pcm.length; i++) {
    const wide = Math.min(Math.max(rint(pcm[i] * 2147483648), -2147483648), 2147483647);
    out[i] = Math.floor(wide / 65536);
  }
  return out;
}

/** A 16-bit mono WAV file (little-endian, 44-byte header) of float32 samples. */
export function toWav(pcm, sampleRate) {
  const samples = pcm16(pcm);
  const bytes = new Uint8Array(44 + samples.length * 2);
  const v = new DataView(bytes.buffer);
  const tag = (at, s) => [...s].forEach((c, i) => v.setUint8(at + i, c.charCodeAt(0)));
  tag(0, 'RIFF'); v.setUint32(4, 36 + samples.length * 2, true); tag(8, 'WAVE');
  tag(12, 'fmt '); v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
  v.setUint32(24, sampleRate, true); v.setUint32(28, sampleRate * 2, true);
  v.setUint16(32, 2, true); v.setUint16(34, 16, true);
  tag(36, 'data'); v.setUint32(40, samples.length * 2, true);
  samples.forEach((x, i) => v.setInt16(44 + i * 2, x, true));
  return bytes;
}

/** WAV bytes (PCM 16-bit or IEEE float 32-bit, any channel count) -> {samples: mono Float32Array,
 * sampleRate}; where there is no browser decoder (Node). */
export function readWav(bytes, name = 'audio') {
  const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const tag = (at) => String.fromCharCode(...b.subarray(at, at + 4));
  if (b.length < 12 || tag(0) !== 'RIFF' || tag(8) !== 'WAVE') throw new InputError(`${name}: not a WAV file (only WAV is read here)`);
  let fmt = null;
  for (let at = 12; at + 8 <= b.length;) {
    const id = tag(at), size = v.getUint32(at + 4, true);
    if (id === 'fmt ') fmt = { code: v.getUint16(at + 8, true), channels: v.getUint16(at + 10, true), rate: v.getUint32(at + 12, true), bits: v.getUint16(at + 22, true) };
    if (id === 'data' && fmt) {
      const n = Math.floor(Math.min(size, b.length - at - 8) / (fmt.bits / 8) / fmt.channels);
      const mono = new Float32Array(n);
      const read = fmt.code === 1 && fmt.bits === 16 ? (o) => v.getInt16(o, true) / 32768
        : fmt.code === 3 && fmt.bits === 32 ? (o) => v.getFloat32(o, true) : null;
      if (!read) throw new InputError(`${name}: WAV of format ${fmt.code}, ${fmt.bits} bits; 16-bit PCM or 32-bit float is read here`);
      for (let i = 0; i < n; i++) {
        let s = 0;
        for (let c = 0; c < fmt.channels; c++) s += read(at + 8 + (i * fmt.channels + c) * (fmt.bits / 8));
        mono[i] = s / fmt.channels;
      }
      return { samples: mono, sampleRate: fmt.rate };
    }
    at += 8 + size + (size % 2);
  }
  throw new InputError(`${name}: WAV without fmt and data chunks`);
}

/** read_reference's checks on mono samples at the codec rate: long enough, short enough for the
 * context, not silent. */
export function checkReference(samples, sampleRate, maxSeconds, name = 'reference audio') {
  const seconds = samples.length / sampleRate;
  if (seconds < MIN_SECONDS) throw new InputError(`${name}: reference audio is ${seconds.toFixed(2)} s; at least ${MIN_SECONDS} s is needed`);
  if (seconds > maxSeconds) {
    throw new InputError(`${name}: reference audio is ${seconds.toFixed(1)} s; at most ${maxSeconds.toFixed(1)} s fits this `
      + "model's context with room to speak");
  }
  let sum = 0;
  for (const x of samples) sum += x * x;
  if (Math.sqrt(sum / samples.length) < SILENCE_RMS) throw new InputError(`${name}: reference audio is silent (RMS below ${SILENCE_RMS})`);
  return samples;
}

// voxport-web: speech from voxport artifacts with onnxruntime, in a browser (main thread or worker,
// onnxruntime-web) and in Node (onnxruntime-node), from one source.
export { VoxportTTS, Voice, defaultDtype, PREFERRED_DTYPES } from './tts.js';
export { toWav, pcm16, readWav } from './runtime/audio.js';
export { splitSentences, completeSentences, planUtterances } from './runtime/chunking.js';
export { NumpyRng } from './runtime/sampling.js';
export { InputError, ArtifactError } from './runtime/errors.js';
export { detectDevice, decodeAudio } from './env/browser.js';

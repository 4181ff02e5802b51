// The demo's voice clip in: a file, or a recording from the microphone (the library checks and encodes
// the samples; decoding happens here, on the page: a worker has no audio decoder).

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

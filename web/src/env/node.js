// Node's environment: an artifact directory on disk (a path or file: URL) or on a server (http(s): its
// files are downloaded once into a cache directory), each file checked against the manifest's sha256;
// sessions from onnxruntime-node, created from the file path so external data is found beside it.
import { ArtifactError } from '../runtime/errors.js';
import { damaged, fetchJson, sha256Hex } from './browser.js';

const fs = () => import('node:fs/promises');
const path = () => import('node:path');

async function readLocal(dir, entry) {
  const { readFile } = await fs();
  const { join } = await path();
  try {
    return await readFile(join(dir, entry.path));
  } catch (e) {
    throw new ArtifactError(`${entry.path}: ${e.code === 'ENOENT' ? 'missing' : 'unreadable'} (${join(dir, entry.path)})`);
  }
}

/** source: a directory path, a file: URL or an http(s) URL (downloaded into cacheDir). */
export async function nodeFiles(source, { cacheDir } = {}) {
  const { join, resolve } = await path();
  const { fileURLToPath } = await import('node:url');
  const remote = /^https?:/i.test(String(source));
  const dir = remote ? null : resolve(String(source).startsWith('file:') ? fileURLToPath(source) : String(source));
  const base = remote ? (String(source).endsWith('/') ? String(source) : `${source}/`) : null;
  const cache = remote ? (cacheDir ?? join((await import('node:os')).tmpdir(), 'voxport-web-cache')) : null;
  const local = {};  // entry path -> file on disk (sessions are created from it)
  return {
    where: remote ? base : dir,
    async manifest() {
      if (remote) return fetchJson(new URL('manifest.json', base));
      const bytes = await readLocal(dir, { path: 'manifest.json' });
      try { return JSON.parse(new TextDecoder().decode(bytes)); } catch { throw new ArtifactError(`${dir}/manifest.json: not valid JSON`); }
    },
    async get(entry, onProgress = () => {}) {
      let bytes, cached = false;
      if (remote) {
        const { mkdir, readFile, writeFile } = await fs();
        // the artifact's layout under a folder per URL: external data stays beside its graph
        const file = join(cache, (await sha256Hex(new TextEncoder().encode(base))).slice(0, 16), entry.path);
        try { bytes = await readFile(file); cached = true; } catch { /* not yet */ }
        if (!bytes || damaged(entry, bytes, await sha256Hex(bytes))) {
          const r = await fetch(new URL(entry.path, base));
          if (!r.ok) throw new ArtifactError(`${entry.path}: ${r.status === 404 ? 'missing' : 'not served'} (HTTP ${r.status})`);
          bytes = new Uint8Array(await r.arrayBuffer());
          cached = false;
          const problem = damaged(entry, bytes, await sha256Hex(bytes));
          if (problem) throw new ArtifactError(problem);
          await mkdir((await path()).dirname(file), { recursive: true });
          await writeFile(file, bytes);
        }
        local[entry.path] = file;
      } else {
        bytes = await readLocal(dir, entry);
        const problem = damaged(entry, bytes, await sha256Hex(bytes));
        if (problem) throw new ArtifactError(problem);
        local[entry.path] = join(dir, entry.path);
      }
      onProgress(bytes.byteLength, cached);
      return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    },
    /** the file on disk of an entry already got (external data sits beside its graph) */
    path: (entry) => local[entry.path],
  };
}

/** onnxruntime-node sessions; threads 0: onnxruntime's own choice. */
export function nodeSessions(ort, files, { threads }) {
  return {
    threads,
    async createSession([main], { device }) {
      const options = { executionProviders: [device], graphOptimizationLevel: 'all', logSeverityLevel: 3,
        // a pool's threads spin after their work by default and hold the cores the next session needs
        extra: { session: { intra_op: { allow_spinning: '0' } } } };
      if (threads) options.intraOpNumThreads = threads;
      try {
        return await ort.InferenceSession.create(files.path(main.entry), options);
      } catch (e) {
        throw new ArtifactError(`${main.entry.path}: onnxruntime could not load it (${String(e.message || e).slice(0, 200)})`);
      }
    },
    /** float32 typed arrays made once and reused across calls: the static cache, bound as both the past
     * input and the present output (onnxruntime-node writes a preallocated output into the tensor's own
     * memory, so one buffer holds the cache across calls, as the Python runtime's io_binding does), and
     * the inputs the runtime writes every frame. */
    async deviceBuffers() {
      return {
        zeros: (dims) => new ort.Tensor('float32', new Float32Array(dims.reduce((a, b) => a * b, 1)), dims),
        write: (tensor, data) => tensor.data.set(data),
      };
    },
  };
}

// Fetch artifact files with progress, keep them in Cache Storage, and check each against the
// manifest's sha256 before use. Cache entries are keyed by URL + sha256, so a file whose hash
// changes in the manifest is fetched again; a cached copy that no longer matches is dropped.
import { ArtifactError } from './manifest.js';

const CACHE = 'voxport-artifacts-v1';

export async function sha256Hex(bytes) {
  const digest = await crypto.subtle.digest('SHA-256', bytes);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

function check(entry, bytes, hash) {
  if (bytes.byteLength !== entry.bytes) {
    return `${entry.path}: damaged (${bytes.byteLength} bytes, the manifest says ${entry.bytes})`;
  }
  if (hash !== entry.sha256) return `${entry.path}: damaged (sha256 differs from the manifest)`;
  return null;
}

async function readWithProgress(response, total, onProgress) {
  const reader = response.body.getReader();
  const buf = new Uint8Array(total);
  let loaded = 0;
  const chunks = [];
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (loaded + value.byteLength <= total) buf.set(value, loaded); else chunks.push(value);
    loaded += value.byteLength;
    onProgress(loaded);
  }
  if (loaded === total && !chunks.length) return buf;
  // longer or shorter than the manifest says: keep the real bytes so the check names the size
  const out = new Uint8Array(loaded);
  out.set(buf.subarray(0, Math.min(loaded, total)));
  let at = Math.min(loaded, total);
  for (const c of chunks) { out.set(c, at); at += c.byteLength; }
  return out;
}

/**
 * The verified bytes of one manifest entry under `baseUrl`.
 * onProgress(loadedBytes, fromCache) is called as bytes arrive.
 */
export async function fetchVerified(baseUrl, entry, onProgress = () => {}) {
  const url = new URL(entry.path, baseUrl).href;
  const key = `${url}?sha256=${entry.sha256}`;
  const cache = globalThis.caches ? await caches.open(CACHE) : null;
  const hit = cache && await cache.match(key);
  if (hit) {
    const bytes = new Uint8Array(await hit.arrayBuffer());
    if (!check(entry, bytes, await sha256Hex(bytes))) { onProgress(bytes.byteLength, true); return bytes; }
    await cache.delete(key);
  }
  let response;
  try {
    response = await fetch(url, { cache: 'no-store' });
  } catch (e) {
    throw new ArtifactError(`${entry.path}: could not be fetched (${e.message})`);
  }
  if (!response.ok) {
    const why = response.status === 404 ? 'missing' : 'not served';
    throw new ArtifactError(`${entry.path}: ${why} (HTTP ${response.status} for ${url})`);
  }
  const bytes = await readWithProgress(response, entry.bytes, (n) => onProgress(n, false));
  const problem = check(entry, bytes, await sha256Hex(bytes));
  if (problem) throw new ArtifactError(problem);
  if (cache) {
    try { await cache.put(key, new Response(bytes)); } catch { /* quota: works uncached */ }
  }
  return bytes;
}

export async function fetchJson(url) {
  let response;
  try { response = await fetch(url, { cache: 'no-store' }); } catch (e) {
    throw new ArtifactError(`${url}: could not be fetched (${e.message})`);
  }
  if (!response.ok) throw new ArtifactError(`${url}: HTTP ${response.status}`);
  try { return await response.json(); } catch {
    throw new ArtifactError(`${url}: not valid JSON`);
  }
}

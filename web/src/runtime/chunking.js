// Long text -> utterances at sentence boundaries (words only when one sentence is too long); a port of
// voxport/runtime/chunking.py that splits every text as Python does (tests/test_web_units.py).
import { InputError } from './errors.js';

// Python's whitespace (str.isspace, which `\s`, strip() and split() use on a str); JS's \s differs
// (it has U+FEFF, lacks U+001C-U+001F and U+0085)
const WS = '\\t\\n\\x0b\\x0c\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const END = '(?=\\n?$)';  // Python's `$`: the end, or before a newline that ends the text
// a sentence ends at . ! ? … with any closing quotes/brackets before a space (so "3.14" stays whole),
// or at the CJK full stops, which need no space
const MARK = `[.!?…]+["'”’)\\]]*(?=[${WS}]|${END})`;
const SENTENCE = new RegExp(`[^]*?(?:${MARK}|[。！？]+|${END})`, 'gu');
const ENDS = new RegExp(`(?:[.!?…]+["'”’)\\]]*|[。！？]+)[${WS}]*${END}`, 'u');
const EDGES = new RegExp(`^[${WS}]+|[${WS}]+$`, 'gu');
const GAPS = new RegExp(`[${WS}]+`, 'u');
const TRAILING = new RegExp(`[${WS}]+$`, 'u');

export const strip = (s) => s.replace(EDGES, '');
const words = (s) => strip(s).split(GAPS).filter(Boolean);

/** re.finditer: every match with its start and end (an empty match moves one character on). */
function finditer(text) {
  return [...text.matchAll(SENTENCE)].map((m) => ({ text: m[0], start: m.index, end: m.index + m[0].length }));
}

export function splitSentences(text) {
  return finditer(text).map((m) => strip(m.text)).filter(Boolean);
}

/** Text that is still arriving -> [sentences already finished, the rest]. A sentence is finished once
 * its end mark is followed by more text (a space), so "3." waits for "14"; a CJK full stop needs
 * nothing after it. */
export function completeSentences(text) {
  const done = [];
  let end = 0;
  for (const m of finditer(text)) {
    const closed = m.end < text.length || /[。！？]$/u.test(m.text.replace(TRAILING, ''));
    if (!strip(m.text) || !closed || !ENDS.test(m.text)) break;
    done.push(strip(m.text));
    end = m.end;
  }
  return [done, text.slice(end)];
}

/** Greedily join consecutive sentences while fits(text) holds; a sentence that does not fit alone is
 * cut between words. InputError when a single word does not fit. */
export function planUtterances(text, fits) {
  const pieces = [];
  for (const s of splitSentences(text)) pieces.push(...(fits(s) ? [s] : splitWords(s, fits)));
  return join(pieces, fits);
}

function join(pieces, fits) {
  const out = [];
  for (const p of pieces) {
    if (out.length && fits(`${out[out.length - 1]} ${p}`)) out[out.length - 1] = `${out[out.length - 1]} ${p}`;
    else out.push(p);
  }
  return out;
}

function splitWords(sentence, fits) {
  for (const w of words(sentence)) {
    // Python's {word[:40]!r}: its first 40 code points, quoted
    if (!fits(w)) throw new InputError(`the word ${pyRepr([...w].slice(0, 40).join(''))} alone does not fit in one utterance's context`);
  }
  return join(words(sentence), fits);
}

// what Python's str.isprintable() calls unprintable (repr escapes it): controls, format, surrogates,
// private use, unassigned, separators other than the space
const UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]/u;
const ESCAPES = { '\\': '\\\\', '\n': '\\n', '\t': '\\t', '\r': '\\r' };

/** Python's repr of a str (the quote it picks, its escapes). */
export function pyRepr(s) {
  const q = s.includes("'") && !s.includes('"') ? '"' : "'";
  const body = [...s].map((c) => {
    if (ESCAPES[c]) return ESCAPES[c];
    if (c === q) return `\\${q}`;
    if (c === ' ' || !UNPRINTABLE.test(c)) return c;
    const n = c.codePointAt(0), hex = n.toString(16);
    return n < 0x100 ? `\\x${hex.padStart(2, '0')}` : n < 0x10000 ? `\\u${hex.padStart(4, '0')}` : `\\U${hex.padStart(8, '0')}`;
  }).join('');
  return q + body + q;
}

// SPDX-License-Identifier: MIT
// HuJSON for the editor: a tokenizer for highlighting (comments, strings,
// object keys, numbers, literals, punctuation) that never fails on broken
// input, and line/column <-> offset conversions. Validation is the
// server's (POST /api/v1/policy/check); this only colours.

export function tokenize(text) {
  const out = [];
  let i = 0;
  const n = text.length;
  const push = (start, end, cls) => { if (end > start) out.push({ start, end, cls }); };
  while (i < n) {
    const c = text[i];
    const start = i;
    if (c === '/' && text[i + 1] === '/') {
      while (i < n && text[i] !== '\n') i++;
      push(start, i, 'c');
    } else if (c === '/' && text[i + 1] === '*') {
      const e = text.indexOf('*/', i + 2);
      i = e < 0 ? n : e + 2;
      push(start, i, 'c');
    } else if (c === '"') {
      i++;
      while (i < n && text[i] !== '"' && text[i] !== '\n') i += text[i] === '\\' ? 2 : 1;
      if (text[i] === '"') i++;
      let j = i;
      while (j < n && (text[j] === ' ' || text[j] === '\t')) j++;
      push(start, i, text[j] === ':' ? 'k' : 's');
    } else if (/[-0-9]/.test(c)) {
      while (i < n && /[-+0-9.eE]/.test(text[i])) i++;
      push(start, i, 'n');
    } else if (/[a-z]/i.test(c)) {
      while (i < n && /[a-z0-9_]/i.test(text[i])) i++;
      const w = text.slice(start, i);
      push(start, i, w === 'true' || w === 'false' || w === 'null' ? 'l' : 'x');
    } else if ('{}[],:'.includes(c)) {
      i++;
      push(start, i, 'p');
    } else {
      i++;
      push(start, i, /\s/.test(c) ? '' : 'x');
    }
  }
  return out;
}

export function lineStarts(text) {
  const s = [0];
  for (let i = 0; i < text.length; i++) if (text[i] === '\n') s.push(i + 1);
  return s;
}

// 1-based line and column (columns count bytes on the server; the same for
// ASCII, which policies nearly always are) to an offset.
export function offsetOf(starts, text, line, col) {
  if (!line || line < 1) return 0;
  const ls = starts[Math.min(line, starts.length) - 1];
  const le = line < starts.length ? starts[line] - 1 : text.length;
  return Math.min(ls + Math.max(col, 1) - 1, le);
}

// Highlights `text` into `pre`, underlining each diagnostic from its position
// to the end of the token there. diags: [{line, column, message}]
export function render(pre, text, diags = []) {
  const toks = tokenize(text);
  const starts = lineStarts(text);
  const marks = [];
  for (const d of diags) {
    const s = offsetOf(starts, text, d.line, d.column);
    const t = toks.find((x) => x.start <= s && s < x.end && x.cls !== '');
    const e = t ? t.end : s;
    marks.push({ s, e, msg: `${d.line}:${d.column}: ${d.message}` });
  }
  const cuts = new Set([0, text.length]);
  for (const t of toks) { cuts.add(t.start); cuts.add(t.end); }
  for (const m of marks) { cuts.add(m.s); cuts.add(m.e); }
  const points = [...cuts].sort((a, b) => a - b);
  const frag = document.createDocumentFragment();
  let ti = 0;
  for (let k = 0; k < points.length; k++) {
    const a = points[k];
    // zero-width marks (end of line or of input) get a visible marker
    for (const m of marks) {
      if (m.s === a && m.e === a) {
        const z = document.createElement('span');
        z.className = 'err err-eol';
        z.title = m.msg;
        z.textContent = ' ';
        frag.append(z);
      }
    }
    if (k === points.length - 1) break;
    const b = points[k + 1];
    while (ti < toks.length && toks[ti].end <= a) ti++;
    const tok = toks[ti] && toks[ti].start <= a ? toks[ti] : null;
    const m = marks.find((x) => x.s <= a && b <= x.e && x.e > x.s);
    const cls = [tok && tok.cls ? 't-' + tok.cls : '', m ? 'err' : ''].filter(Boolean).join(' ');
    const piece = text.slice(a, b);
    if (cls) {
      const sp = document.createElement('span');
      sp.className = cls;
      if (m) sp.title = m.msg;
      sp.textContent = piece;
      frag.append(sp);
    } else {
      frag.append(piece);
    }
  }
  // A trailing newline needs a character after it to take up a line.
  frag.append('\n');
  pre.replaceChildren(frag);
}

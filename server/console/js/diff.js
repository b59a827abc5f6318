// SPDX-License-Identifier: MIT
// Line diff (longest common subsequence after trimming the common head and
// tail) for "review before saving" and the conflict view.

const MAX_CELLS = 4e6;

export function diffLines(a, b) {
  const A = a.split('\n');
  const B = b.split('\n');
  let head = 0;
  while (head < A.length && head < B.length && A[head] === B[head]) head++;
  let tail = 0;
  while (tail < A.length - head && tail < B.length - head &&
         A[A.length - 1 - tail] === B[B.length - 1 - tail]) tail++;
  const out = [];
  for (let i = 0; i < head; i++) out.push({ op: ' ', a: i + 1, b: i + 1, text: A[i] });
  const a2 = A.slice(head, A.length - tail);
  const b2 = B.slice(head, B.length - tail);
  const n = a2.length;
  const m = b2.length;
  if (n * m > MAX_CELLS) {
    a2.forEach((t, i) => out.push({ op: '-', a: head + i + 1, text: t }));
    b2.forEach((t, j) => out.push({ op: '+', b: head + j + 1, text: t }));
  } else {
    const L = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) {
        L[i][j] = a2[i] === b2[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
      }
    }
    let i = 0;
    let j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && a2[i] === b2[j]) {
        out.push({ op: ' ', a: head + i + 1, b: head + j + 1, text: a2[i] });
        i++; j++;
      } else if (j < m && (i === n || L[i][j + 1] >= L[i + 1][j])) {
        out.push({ op: '+', b: head + j + 1, text: b2[j] });
        j++;
      } else {
        out.push({ op: '-', a: head + i + 1, text: a2[i] });
        i++;
      }
    }
  }
  for (let k = 0; k < tail; k++) {
    out.push({ op: ' ', a: A.length - tail + k + 1, b: B.length - tail + k + 1, text: A[A.length - tail + k] });
  }
  return out;
}

// A unified view: changed lines with 3 lines of context, gaps folded.
export function renderDiff(container, a, b, labels = ['active', 'yours']) {
  const d = diffLines(a, b);
  const keep = new Set();
  d.forEach((x, k) => { if (x.op !== ' ') for (let c = k - 3; c <= k + 3; c++) keep.add(c); });
  const table = document.createElement('table');
  table.className = 'diff';
  const cap = document.createElement('caption');
  const adds = d.filter((x) => x.op === '+').length;
  const dels = d.filter((x) => x.op === '-').length;
  cap.textContent = adds || dels ? `${labels[0]} → ${labels[1]}: ${adds} lines added, ${dels} removed` : 'No differences.';
  table.append(cap);
  let gap = false;
  d.forEach((x, k) => {
    if (!keep.has(k)) {
      if (!gap) {
        const tr = table.insertRow();
        tr.className = 'gap';
        const td = tr.insertCell();
        td.colSpan = 4;
        td.textContent = '⋯';
      }
      gap = true;
      return;
    }
    gap = false;
    const tr = table.insertRow();
    tr.className = x.op === '+' ? 'add' : x.op === '-' ? 'del' : 'ctx';
    tr.insertCell().textContent = x.a || '';
    tr.insertCell().textContent = x.b || '';
    tr.insertCell().textContent = x.op;
    tr.insertCell().textContent = x.text;
  });
  container.replaceChildren(table);
  return { adds, dels };
}

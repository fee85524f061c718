// Markdown to DOM nodes, for answers. Nothing here ever parses markup: every piece of the text
// becomes a text node inside elements this file chooses, links keep only http(s) addresses, and
// images are not loaded (their syntax stays as written). Blocks: paragraphs (single newlines
// kept as line breaks, as chat answers and poems mean them), headings, fenced code, lists,
// block quotes, tables and rules. Inline: code, bold, italic, strike-through, links and, when
// the caller asks, citations such as [2].

import { h } from './dom.js';

/**
 * `text` rendered as a DocumentFragment. `options.citation(n)`, when given, makes the node shown
 * for a citation marker `[n]` (and each number of `[1, 3]`).
 */
export function renderMarkdown(text, options = {}) {
  const fragment = document.createDocumentFragment();
  fragment.append(...blocks(text.replace(/\r\n?/g, '\n').split('\n'), options));
  return fragment;
}

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const TABLE_DIVIDER = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;

function blocks(lines, options) {
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (line.trim() === '') {
      i += 1;
      continue;
    }
    let match;
    if ((match = FENCE.exec(line))) {
      const fence = match[1];
      const body = [];
      i += 1;
      // An unclosed fence (an answer still streaming) runs to the end.
      while (i < lines.length && !lines[i].trimStart().startsWith(fence)) body.push(lines[i++]);
      i += 1;
      const code = h('code', {}, body.join('\n'));
      if (match[2]) code.dataset.language = match[2];
      out.push(h('pre', {}, code));
    } else if ((match = HEADING.exec(line))) {
      // Answers sit inside the page's own headings: their levels start lower.
      const level = Math.min(match[1].length + 2, 6);
      out.push(h(`h${level}`, {}, inline(match[2], options)));
      i += 1;
    } else if (RULE.test(line)) {
      out.push(h('hr'));
      i += 1;
    } else if (QUOTE.test(line)) {
      const body = [];
      while (i < lines.length && (match = QUOTE.exec(lines[i]))) {
        body.push(match[1]);
        i += 1;
      }
      out.push(h('blockquote', {}, blocks(body, options)));
    } else if (ITEM.test(line)) {
      i = list(lines, i, options, out);
    } else if (line.includes('|') && i + 1 < lines.length && TABLE_DIVIDER.test(lines[i + 1]) && lines[i + 1].includes('-')) {
      i = table(lines, i, options, out);
    } else {
      const body = [];
      while (i < lines.length && lines[i].trim() !== '' && !startsBlock(lines[i])) body.push(lines[i++]);
      if (body.length === 0) body.push(lines[i++]);
      out.push(h('p', {}, inline(body.join('\n'), options)));
    }
  }
  return out;
}

function startsBlock(line) {
  return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) || ITEM.test(line);
}

/** One list from `lines[start]`, its items' indented lines included; returns the next line. */
function list(lines, start, options, out) {
  const first = ITEM.exec(lines[start]);
  const indent = first[1].length;
  const ordered = /\d/.test(first[2]);
  const node = h(ordered ? 'ol' : 'ul');
  if (ordered && parseInt(first[2], 10) !== 1) node.start = parseInt(first[2], 10);
  let i = start;
  let loose = false;
  while (i < lines.length) {
    const match = ITEM.exec(lines[i]);
    if (!match || match[1].length !== indent || /\d/.test(match[2]) !== ordered) break;
    const body = [match[3]];
    i += 1;
    // The item goes on over lines indented past its marker, and over blank lines inside it.
    while (i < lines.length) {
      const next = lines[i];
      const nested = ITEM.exec(next);
      if (next.trim() === '') {
        const following = lines[i + 1];
        if (following === undefined || leading(following) <= indent) break;
        loose = true;
        body.push('');
      } else if (leading(next) > indent || (!nested && !startsBlock(next) && body.at(-1) !== '')) {
        body.push(next.slice(Math.min(leading(next), indent + 2)));
      } else {
        break;
      }
      i += 1;
    }
    const content = blocks(body, options);
    const tight = !loose && content[0]?.tagName === 'P';
    node.append(h('li', {}, tight ? [...content[0].childNodes, ...content.slice(1)] : content));
    while (i < lines.length && lines[i].trim() === '' && ITEM.test(lines[i + 1] ?? '')) i += 1;
  }
  out.push(node);
  return i;
}

function leading(line) {
  return line.length - line.trimStart().length;
}

/** A table from its header line, divider and rows; returns the next line. */
function table(lines, start, options, out) {
  const cells = (line) => line.trim().replace(/^\|/, '').replace(/\|$/, '').split('|').map((c) => c.trim());
  const head = h('tr', {}, cells(lines[start]).map((c) => h('th', {}, inline(c, options))));
  const rows = [];
  let i = start + 2;
  while (i < lines.length && lines[i].includes('|') && lines[i].trim() !== '') {
    rows.push(h('tr', {}, cells(lines[i]).map((c) => h('td', {}, inline(c, options)))));
    i += 1;
  }
  out.push(h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, head), h('tbody', {}, rows))));
  return i;
}

// Group numbers: 1-2 code, 3-4 link, 5-6 bold, 7 strike, 8-9 italic, 10 bare address, 11 citation.
const INLINE =
  /(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)|\[([^\]\n]+)\]\(([^)\s]+)\)|\*\*(?=\S)([^\n]*?\S)\*\*|__(?=\S)([^\n]*?\S)__|~~(?=\S)([^\n]*?\S)~~|\*(?=[^*\s])([^*\n]*?[^*\s])\*|(?<![\w])_(?=[^_\s])([^_\n]*?[^_\s])_(?![\w])|(https?:\/\/[^\s<>]*[^\s<>.,;:!?'")\]])|\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]/g;

/** Inline Markdown as an array of nodes; newlines become line breaks. */
function inline(text, options) {
  const out = [];
  let last = 0;
  for (const m of text.matchAll(INLINE)) {
    if (m.index < last) continue;
    out.push(...plain(text.slice(last, m.index)));
    out.push(...span(m, options));
    last = m.index + m[0].length;
  }
  out.push(...plain(text.slice(last)));
  return out;
}

function span(m, options) {
  if (m[2] !== undefined) return [h('code', {}, m[2])];
  if (m[3] !== undefined) {
    const url = safeUrl(m[4]);
    return url ? [link(url, inline(m[3], options))] : plain(m[0]);
  }
  if (m[5] !== undefined || m[6] !== undefined) return [h('strong', {}, inline(m[5] ?? m[6], options))];
  if (m[7] !== undefined) return [h('del', {}, inline(m[7], options))];
  if (m[8] !== undefined || m[9] !== undefined) return [h('em', {}, inline(m[8] ?? m[9], options))];
  if (m[10] !== undefined) {
    const url = safeUrl(m[10]);
    return url ? [link(url, [m[10]])] : plain(m[0]);
  }
  if (m[11] !== undefined && options.citation) {
    return m[11].split(',').map((n) => options.citation(parseInt(n, 10)));
  }
  return plain(m[0]);
}

function link(url, children) {
  return h('a', { href: url, target: '_blank', rel: 'noopener noreferrer nofollow' }, children);
}

/** The address when it is http(s), else null: no javascript:, data: or other schemes. */
function safeUrl(text) {
  try {
    const url = new URL(text);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
  } catch {
    return null;
  }
}

function plain(text) {
  const out = [];
  text.split('\n').forEach((piece, i) => {
    if (i > 0) out.push(h('br'));
    if (piece) out.push(document.createTextNode(piece));
  });
  return out;
}

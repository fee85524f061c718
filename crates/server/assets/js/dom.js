// Building the page from data. Text always goes in as text nodes, never as markup: whatever a
// model or a document says stays text (the page's Content-Security-Policy also forbids
// assigning markup to innerHTML, through Trusted Types).

/**
 * An element with attributes, properties and children. `attrs` keys starting with `on` are
 * event listeners; `class`, `dataset`, `hidden`, `value` and `checked` are set as properties; the
 * rest as attributes. Children are nodes, strings (as text), or arrays of those; null is skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      node.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      node.className = value;
    } else if (key === 'dataset') {
      Object.assign(node.dataset, value);
    } else if (key === 'hidden' || key === 'value' || key === 'checked' || key === 'disabled') {
      node[key] = value;
    } else {
      node.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(node, children);
  return node;
}

/** Appends children (nodes, strings as text, nested arrays; null and false skipped). */
export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replaces every child of `node` with `children`. */
export function replace(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

export const $ = (id) => document.getElementById(id);

/** A short message at the bottom of the window: errors stay until clicked, others fade. */
export function toast(message, kind = 'error') {
  const item = h('div', { class: `toast ${kind}`, onclick: () => item.remove() }, message);
  $('toasts').append(item);
  if (kind !== 'error') setTimeout(() => item.remove(), 4000);
}

/** A number with at most `digits` decimals, without trailing zeros. */
export function fmt(value, digits = 1) {
  return Number(value).toLocaleString('en-US', { maximumFractionDigits: digits });
}

/** A cost in dollars with enough decimals to show something for tiny amounts. */
export function dollars(cost) {
  if (cost === 0) return '$0';
  const digits = cost >= 0.01 ? 4 : 6;
  return `$${cost.toFixed(digits)}`;
}

/** A function that runs `fn` before the next frame, once however often it is called meanwhile. */
export function perFrame(fn) {
  let pending = false;
  return () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      fn();
    });
  };
}

/** Saves `blob` as a file named `name`, through the browser's downloads. */
export function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = h('a', { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

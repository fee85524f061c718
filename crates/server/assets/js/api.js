// Talking to the server: JSON requests with the API key, errors in OpenAI's shape, and
// server-sent event streams read from fetch (so that aborting the fetch cancels the generation).

const KEY_STORAGE = 'temper.apiKey';

export function apiKey() {
  return localStorage.getItem(KEY_STORAGE) ?? '';
}

export function setApiKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

/** An error the server answered with (or the network gave), with what it names. */
export class ApiFailure extends Error {
  constructor(message, { status = 0, param = null, code = null } = {}) {
    super(message);
    this.status = status;
    this.param = param;
    this.code = code;
  }

  /** The message, with the field at fault when the server named one. */
  describe() {
    const where = this.param ? ` (${this.param})` : '';
    return `${this.message}${where}`;
  }
}

/** Listeners told when the server refuses the key, so the page can ask for one. */
const unauthorizedListeners = [];
export function onUnauthorized(listener) {
  unauthorizedListeners.push(listener);
}

function headers(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

/**
 * Sends a request and returns the response once its status says success; otherwise throws an
 * ApiFailure carrying the server's message. `body` is sent as JSON unless it is FormData.
 */
export async function request(path, { method = 'GET', body, signal } = {}) {
  const init = { method, signal, headers: headers() };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiFailure(`cannot reach the server: ${error.message}`);
  }
  if (!response.ok) throw await failure(response);
  return response;
}

/** The JSON answer of a request. */
export async function json(path, options) {
  const response = await request(path, options);
  return response.json();
}

async function failure(response) {
  let error = null;
  try {
    error = (await response.json()).error;
  } catch {
    // Not JSON: a proxy's page, say. The status is all there is.
  }
  if (response.status === 401) unauthorizedListeners.forEach((listener) => listener());
  const message = error?.message ?? `the server answered ${response.status} ${response.statusText}`;
  return new ApiFailure(message, { status: response.status, param: error?.param, code: error?.code });
}

/**
 * Reads a server-sent event stream, calling `onData` with each event's parsed JSON, until
 * `data: [DONE]` or the end of the body. An event carrying `error` (OpenAI's mid-stream error)
 * throws it as an ApiFailure.
 */
export async function readEvents(response, onData) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = eventEnd(buffer)) !== null) {
      const event = buffer.slice(0, end.at);
      buffer = buffer.slice(end.at + end.length);
      const data = event
        .split(/\r?\n/)
        .filter((line) => line.startsWith('data:'))
        .map((line) => line.slice(line.startsWith('data: ') ? 6 : 5))
        .join('\n');
      if (data === '') continue; // a keep-alive comment
      if (data === '[DONE]') {
        reader.cancel().catch(() => {});
        return;
      }
      const payload = JSON.parse(data);
      const error = payload.error;
      if (error) {
        if (typeof error === 'string') throw new ApiFailure(error);
        throw new ApiFailure(error.message, { param: error.param, code: error.code });
      }
      onData(payload);
    }
  }
}

/** Where the first event of `buffer` ends: a blank line, in either line ending. */
function eventEnd(buffer) {
  const match = /\r?\n\r?\n/.exec(buffer);
  return match ? { at: match.index, length: match[0].length } : null;
}

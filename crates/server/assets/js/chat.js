// The conversation: one lane, or two side by side when comparing, each streamed from
// POST /v1/chat/completions with its own model and parameters. Stop aborts the requests, which
// cancels the generations on the server.

import { $, h, replace, fmt, dollars, perFrame, toast } from './dom.js';
import { request, readEvents, ApiFailure } from './api.js';
import { renderMarkdown } from './markdown.js';
import { renderParams, sentParams, describeParams } from './params.js';
import { modelPicker } from './models.js';
import { state, activeLane, newLane, newMessage, copyMessage, messagesFor, save } from './state.js';

/** The running send's abort controller, or null when idle. */
let running = null;
/** For each message on the page, the elements that show it. */
const views = new Map();

export function initChat() {
  $('composer').addEventListener('submit', (event) => {
    event.preventDefault();
    send();
  });
  $('message').addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  $('stop').addEventListener('click', stop);
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && running && !document.querySelector('dialog[open]')) stop();
  });
  $('compare-toggle').addEventListener('click', () => setCompare(state.lanes.length === 1));
  $('clear-chat').addEventListener('click', () => {
    if (running) return;
    state.lanes.forEach((lane) => (lane.messages = []));
    renderLanes();
  });
  renderAll();
}

/** Redraws everything that depends on the lanes: after loading a workspace or a prompt file. */
export function renderAll() {
  renderLanes();
  renderParamsPanel();
}

export function isRunning() {
  return running !== null;
}

function setCompare(on) {
  if (running) return;
  if (on) {
    const a = state.lanes[0];
    const b = newLane('B', a.model, a.params);
    b.messages = a.messages.map(copyMessage);
    state.lanes.push(b);
    state.active = 1;
  } else {
    state.lanes.length = 1;
    state.active = 0;
  }
  save();
  renderAll();
}

// ---------------------------------------------------------------------------------------------
// Drawing

function renderLanes() {
  const comparing = state.lanes.length > 1;
  $('compare-toggle').setAttribute('aria-pressed', String(comparing));
  const lanes = $('lanes');
  lanes.dataset.count = String(state.lanes.length);
  views.clear();
  const empty = state.lanes[0].messages.length === 0;
  replace(lanes, empty && !comparing ? welcome() : state.lanes.map(laneColumn));
  scrollToEnd();
}

function welcome() {
  const suggestion = 'Write a short poem about the sea.';
  return h(
    'div',
    { class: 'welcome' },
    h('h2', {}, 'Try a prompt'),
    h(
      'p',
      {},
      'The system message and the examples on the left are sent before every message. Change them, ' +
        'tune the parameters on the right, and compare two models or settings side by side.',
    ),
    h(
      'button',
      {
        type: 'button',
        class: 'suggestion',
        onclick: () => {
          $('message').value = suggestion;
          $('message').focus();
        },
      },
      suggestion,
    ),
  );
}

function laneHead(lane) {
  return h(
    'header',
    { class: 'lane-head', dataset: { lane: lane.id }, onclick: () => selectLane(state.lanes.indexOf(lane)) },
    h('span', { class: 'lane-tag' }, lane.id),
    h('span', { class: 'lane-model' }, lane.model ?? 'no model'),
    h('span', { class: 'lane-params', title: describeParams(lane.params) }, describeParams(lane.params)),
  );
}

function laneColumn(lane) {
  return h(
    'section',
    { class: 'lane', dataset: { lane: lane.id }, 'aria-label': `Answers ${lane.id}` },
    state.lanes.length > 1 ? laneHead(lane) : null,
    h(
      'div',
      { class: 'messages' },
      lane.messages.length ? lane.messages.map(messageView) : h('p', { class: 'empty' }, `Answers from ${lane.id} appear here.`),
    ),
  );
}

function messageView(message) {
  const body = h('div', { class: message.role === 'user' ? 'message-body' : 'message-body markdown' });
  const foot = h('div', { class: 'message-foot' });
  const node = h('div', { class: `message ${message.role}`, dataset: { id: message.id } }, body, message.role === 'assistant' ? foot : null);
  views.set(message.id, { node, body, foot, redraw: perFrame(() => drawMessage(message)) });
  drawMessage(message);
  return node;
}

function drawMessage(message) {
  const view = views.get(message.id);
  if (!view) return;
  const nearEnd = isNearEnd(view.node);
  if (message.role === 'user') {
    view.body.textContent = message.content;
    return;
  }
  view.node.className = `message assistant ${message.status}`;
  replace(view.body, renderMarkdown(message.content));
  if (message.status === 'streaming' && message.content === '') view.body.append(h('span', { class: 'thinking' }, 'waiting for the first token…'));
  const finished = message.status === 'done' || message.status === 'stopped';
  const copyButton = finished ? h('button', { type: 'button', class: 'copy ghost small', onclick: () => copy(message.content) }, 'Copy') : null;
  replace(
    view.foot,
    message.error ? h('p', { class: 'error-text' }, message.error) : null,
    stats(message),
    h('div', { class: 'sent-row' }, sentLine(message), copyButton),
  );
  if (nearEnd) scrollToEnd();
}

/** The figures under an answer: tokens, speed, time, cost. */
function stats(message) {
  const items = [];
  const item = (label, value, title) => items.push(h('span', { class: 'stat', title }, h('b', {}, value), ` ${label}`));
  const usage = message.usage;
  if (message.status === 'streaming' || !usage) {
    if (message.pieces > 0) {
      item('tokens', fmt(message.pieces, 0), 'pieces of text received so far (about one token each)');
      if (message.firstAt && message.pieces > 1) {
        const seconds = (performance.now() - message.firstAt) / 1000;
        item('tok/s', fmt((message.pieces - 1) / seconds), 'measured in the browser while streaming');
      }
    }
  } else {
    item('prompt', fmt(usage.prompt_tokens, 0), 'prompt tokens, after the chat template');
    item('tokens', fmt(usage.completion_tokens, 0), 'tokens generated');
  }
  if (message.timings?.decode_tokens_per_second) {
    item('tok/s', fmt(message.timings.decode_tokens_per_second), 'decoding speed, measured by the server');
  }
  if (message.elapsed !== undefined) item('s', fmt(message.elapsed / 1000, 2), 'from sending to the last token');
  if (message.timings?.ttft_ms !== undefined) item('ms to first token', fmt(message.timings.ttft_ms, 0));
  if (usage) {
    if (typeof usage.cost === 'number') item('', dollars(usage.cost), 'the cost the model’s prices give');
    else items.push(h('span', { class: 'stat muted', title: 'this model has no prices: a local model costs nothing per token' }, 'no cost'));
  }
  const status = { stopped: 'stopped', error: 'failed' }[message.status];
  if (status) items.unshift(h('span', { class: `badge ${message.status}` }, status));
  if (message.finish === 'length') items.push(h('span', { class: 'badge' }, 'hit max tokens'));
  return h('div', { class: 'stats' }, items);
}

/** The model that answered and the parameters that were sent. */
function sentLine(message) {
  if (!message.sent) return null;
  const model = message.model && message.model !== message.sent.model ? `${message.model} (for ${message.sent.model})` : message.sent.model;
  return h('div', { class: 'sent', title: 'what this answer was asked with' }, `${model} · ${describeParams(message.sent)}`);
}

async function copy(text) {
  try {
    await navigator.clipboard.writeText(text);
    toast('copied', 'info');
  } catch {
    toast('the browser did not allow copying');
  }
}

function isNearEnd(node) {
  const scroller = node.closest('.messages');
  return !scroller || scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
}

function scrollToEnd() {
  document.querySelectorAll('#lanes .messages').forEach((scroller) => (scroller.scrollTop = scroller.scrollHeight));
}

// ---------------------------------------------------------------------------------------------
// The parameters panel: the model and parameters of the lane being edited.

let picker = null;

function renderParamsPanel() {
  const comparing = state.lanes.length > 1;
  const switcher = $('lane-switch');
  switcher.hidden = !comparing;
  replace(
    switcher,
    comparing
      ? state.lanes.map((lane, i) =>
          h('button', { type: 'button', role: 'tab', 'aria-selected': String(i === state.active), onclick: () => selectLane(i) }, lane.id),
        )
      : [],
  );
  const lane = activeLane();
  picker?.dispose();
  picker = modelPicker(
    () => lane.model,
    (model) => {
      lane.model = model;
      changed();
    },
  );
  const preview = h('pre', { class: 'request-preview', id: 'request-preview' });
  const showPreview = () => {
    preview.textContent = JSON.stringify({ model: lane.model, ...sentParams(lane.params) }, null, 2);
  };
  const changed = () => {
    showPreview();
    save();
    document.querySelectorAll(`.lane-head[data-lane="${lane.id}"]`).forEach((node) => node.replaceWith(laneHead(lane)));
  };
  const controls = h('div', { class: 'params' });
  renderParams(controls, lane.params, changed);
  replace(
    $('params'),
    h('label', { class: 'field-label' }, 'Model'),
    picker,
    controls,
    h('div', { class: 'section-head' }, h('h3', {}, 'Sent with each message'), h('span', { class: 'hint' }, 'besides the messages')),
    preview,
  );
  showPreview();
}

function selectLane(index) {
  state.active = index;
  renderParamsPanel();
}

// ---------------------------------------------------------------------------------------------
// Sending

async function send() {
  const draft = $('message').value;
  if (running || draft.trim() === '') return;
  const controller = new AbortController();
  running = controller;
  setBusy(true);
  const answers = state.lanes.map((lane) => {
    const messages = messagesFor(lane, draft);
    lane.messages.push(newMessage('user', draft));
    const answer = Object.assign(newMessage('assistant'), { status: 'streaming', pieces: 0 });
    lane.messages.push(answer);
    return { lane, messages, answer };
  });
  $('message').value = '';
  renderLanes();
  await Promise.all(answers.map(({ lane, messages, answer }) => stream(lane, messages, answer, controller.signal)));
  running = null;
  setBusy(false);
  $('message').focus();
}

function stop() {
  running?.abort();
}

function setBusy(busy) {
  $('send').hidden = busy;
  $('stop').hidden = !busy;
  $('compare-toggle').disabled = busy;
  $('clear-chat').disabled = busy;
  document.body.classList.toggle('busy', busy);
}

/** Streams one lane's answer into `answer`, which records how it went. */
async function stream(lane, messages, answer, signal) {
  const body = { model: lane.model, messages, stream: true, stream_options: { include_usage: true }, ...sentParams(lane.params) };
  answer.sent = { model: lane.model, ...sentParams(lane.params) };
  const started = performance.now();
  const redraw = () => views.get(answer.id)?.redraw();
  try {
    const response = await request('/v1/chat/completions', { method: 'POST', body, signal });
    await readEvents(response, (chunk) => {
      const choice = chunk.choices?.[0];
      const text = choice?.delta?.content;
      if (text) {
        answer.content += text;
        answer.pieces += 1;
        answer.firstAt ??= performance.now();
      }
      if (chunk.temper?.restart) {
        // The fallback chain moved to another model mid-answer: it starts over.
        answer.content = '';
        answer.pieces = 0;
        toast(`${state.lanes.length > 1 ? `${lane.id}: ` : ''}restarted on another model: ${chunk.temper.restart}`, 'info');
      }
      if (choice?.finish_reason) answer.finish = choice.finish_reason;
      if (chunk.temper?.timings) answer.timings = chunk.temper.timings;
      if (chunk.usage) answer.usage = chunk.usage;
      if (chunk.model) answer.model = chunk.model;
      redraw();
    });
    answer.status = 'done';
  } catch (error) {
    if (error.name === 'AbortError') {
      answer.status = 'stopped';
    } else {
      answer.status = 'error';
      answer.error = error instanceof ApiFailure ? error.describe() : String(error.message ?? error);
    }
  }
  answer.elapsed = performance.now() - started;
  save();
  redraw();
}

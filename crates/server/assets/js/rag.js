// Documents: the RAG collections of the server's store, uploading files into one, and asking it
// (POST /api/rag/ask), with the answer streamed and its citations opening the cited passages.

import { $, h, replace, fmt, perFrame, toast } from './dom.js';
import { json, request, readEvents, ApiFailure } from './api.js';
import { renderMarkdown } from './markdown.js';
import { sentParams } from './params.js';
import { state } from './state.js';

const CHOSEN = 'temper.collection';
let collections = [];
/** The collection chosen, which may not exist yet (it does once files are added to it). */
let chosen = localStorage.getItem(CHOSEN);
let asking = null;

export function initRag() {
  $('new-collection').addEventListener('submit', (event) => {
    event.preventDefault();
    const name = $('new-collection-name').value.trim();
    if (!name) return;
    $('new-collection-name').value = '';
    choose(name);
  });
  $('upload-input').addEventListener('change', () => {
    upload([...$('upload-input').files]);
    $('upload-input').value = '';
  });
  const zone = $('upload');
  zone.addEventListener('dragover', (event) => {
    event.preventDefault();
    zone.classList.add('dragging');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('dragging'));
  zone.addEventListener('drop', (event) => {
    event.preventDefault();
    zone.classList.remove('dragging');
    upload([...event.dataTransfer.files]);
  });
  $('ask').addEventListener('submit', (event) => {
    event.preventDefault();
    ask();
  });
  $('question').addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      ask();
    }
  });
  $('ask-stop').addEventListener('click', () => asking?.abort());
}

/** Loads the collections (when the view is shown). */
export async function showRag() {
  try {
    collections = (await json('/api/rag/collections')).collections;
  } catch (error) {
    toast(`cannot list the collections: ${error.describe?.() ?? error.message}`);
  }
  if (!chosen && collections.length) chosen = collections[0].name;
  renderCollections();
}

function choose(name) {
  chosen = name;
  localStorage.setItem(CHOSEN, name);
  renderCollections();
}

function renderCollections() {
  const known = collections.some((c) => c.name === chosen);
  const entries = known || !chosen ? collections : [...collections, { name: chosen, documents: 0, chunks: 0, pending: true }];
  replace(
    $('collections'),
    entries.length
      ? entries.map((c) =>
          h(
            'li',
            {},
            h(
              'button',
              { type: 'button', class: 'collection', 'aria-pressed': String(c.name === chosen), onclick: () => choose(c.name) },
              h('span', { class: 'collection-name' }, c.name),
              h('span', { class: 'hint' }, c.pending ? 'new: add files to create it' : `${c.documents} documents · ${c.chunks} chunks${c.embedder ? ` · ${c.embedder}` : ''}`),
            ),
          ),
        )
      : h('li', { class: 'empty' }, 'No collections yet: name one below and add files.'),
  );
  $('upload').hidden = !chosen;
  $('ask-send').disabled = !chosen;
  $('ask-hint').textContent = chosen
    ? `Asks “${chosen}” with ${state.lanes[0].model}, the chat’s model and parameters; the answer cites its sources`
    : 'Choose a collection first';
}

async function upload(files) {
  if (!chosen || files.length === 0) return;
  const form = new FormData();
  files.forEach((file) => form.append('file', file, file.name));
  const results = $('upload-results');
  replace(results, h('li', { class: 'hint' }, `adding ${files.length} file${files.length > 1 ? 's' : ''} to ${chosen}…`));
  try {
    const answer = await json(`/api/rag/collections/${encodeURIComponent(chosen)}/files`, { method: 'POST', body: form });
    replace(
      results,
      answer.ingested.map((f) => h('li', { class: 'ok' }, h('span', { class: 'file' }, f.file), ` · ${f.chunks} chunks`)),
      answer.skipped.map((f) => h('li', { class: 'skipped' }, h('span', { class: 'file' }, f.file), ` skipped: ${f.reason}`)),
    );
  } catch (error) {
    replace(results, h('li', { class: 'error-text' }, error.describe?.() ?? error.message));
  }
  await showRag();
}

async function ask() {
  const question = $('question').value.trim();
  if (!chosen || !question || asking) return;
  const lane = state.lanes[0];
  asking = new AbortController();
  $('ask-send').hidden = true;
  $('ask-stop').hidden = false;
  $('rag-empty').hidden = true;
  $('rag-answer').hidden = false;
  const answer = { text: '', sources: [], citations: null, usage: null };
  const draw = perFrame(() => drawAnswer(answer));
  replace($('rag-stats'), 'retrieving…');
  replace($('rag-answer-text'));
  replace($('rag-sources'));
  const started = performance.now();
  try {
    const body = { collection: chosen, question, model: lane.model, params: sentParams(lane.params) };
    const response = await request('/api/rag/ask', { method: 'POST', body, signal: asking.signal });
    await readEvents(response, (event) => {
      if (event.type === 'sources') answer.sources = event.sources;
      else if (event.type === 'delta') answer.text += event.text;
      else if (event.type === 'done') Object.assign(answer, { text: event.text, citations: event.citations, usage: event.usage });
      draw();
    });
    answer.elapsed = performance.now() - started;
  } catch (error) {
    answer.error = error.name === 'AbortError' ? 'stopped' : error instanceof ApiFailure ? error.describe() : error.message;
  } finally {
    asking = null;
    $('ask-send').hidden = false;
    $('ask-stop').hidden = true;
  }
  drawAnswer(answer);
}

function drawAnswer(answer) {
  const cite = (n) => {
    const source = answer.sources.find((s) => s.n === n);
    if (!source) return h('span', { class: 'cite missing', title: 'no such source' }, `[${n}]`);
    return h('button', { type: 'button', class: 'cite', title: source.title || source.source, onclick: () => openPassage(source) }, String(n));
  };
  replace($('rag-answer-text'), renderMarkdown(answer.text, { citation: cite }));
  const cited = new Set(answer.citations ?? []);
  replace(
    $('rag-sources'),
    answer.sources.map((s) =>
      h(
        'li',
        { class: cited.has(s.n) ? 'source cited' : 'source' },
        h(
          'button',
          { type: 'button', class: 'source-open', onclick: () => openPassage(s) },
          h('span', { class: 'source-n' }, String(s.n)),
          h('span', { class: 'source-title' }, s.title || s.source),
          h('span', { class: 'source-path' }, s.source),
        ),
        h('p', { class: 'source-text' }, s.text),
      ),
    ),
  );
  const parts = [];
  if (answer.usage) parts.push(`${fmt(answer.usage.prompt_tokens, 0)} prompt tokens`, `${fmt(answer.usage.completion_tokens, 0)} tokens`);
  if (typeof answer.usage?.cost === 'number') parts.push(`$${answer.usage.cost.toFixed(6)}`);
  if (answer.elapsed) parts.push(`${fmt(answer.elapsed / 1000, 2)} s`);
  if (answer.citations) parts.push(answer.citations.length ? `cites ${answer.citations.map((n) => `[${n}]`).join(' ')}` : 'cites no source');
  replace($('rag-stats'), answer.error ? h('span', { class: 'error-text' }, answer.error) : parts.join(' · '));
}

function openPassage(source) {
  $('passage-title').textContent = source.title || source.source;
  $('passage-source').textContent = `[${source.n}] ${source.source}`;
  $('passage-text').textContent = source.text;
  $('passage-dialog').showModal();
}

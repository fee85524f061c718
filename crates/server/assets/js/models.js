// The model picker: every chat model GET /v1/models lists, local (the catalog, installed or
// pullable) and remote (the profiles of temper.toml), and pulling one that is not installed.

import { h, replace, fmt } from './dom.js';
import { json, request, readEvents } from './api.js';

let list = [];
const listeners = new Set();

/** Fetches the list again and redraws every picker. */
export async function refreshModels() {
  const answer = await json('/v1/models');
  list = answer.data;
  listeners.forEach((redraw) => redraw());
  return list;
}

export function models() {
  return list;
}

/** The first installed local chat model, for a fresh workspace. */
export function defaultModel() {
  const local = list.filter((m) => m.temper?.source === 'catalog' && m.temper.kind === 'chat');
  return (local.find((m) => m.temper.loaded) ?? local.find((m) => m.temper.installed) ?? local[0] ?? list[0])?.id;
}

function describe(model) {
  const t = model.temper ?? {};
  const notes = [];
  if (t.kind === 'completion') notes.push('base model');
  if (t.source === 'catalog' && !t.installed) notes.push('not installed');
  if (t.loaded) notes.push('loaded');
  if (t.source === 'profile' && t.model) notes.push(`${model.owned_by} ${t.model}`);
  return notes.length ? `${model.id} · ${notes.join(', ')}` : model.id;
}

/**
 * A model picker showing `current()`, calling `choose(id)` on a change; it offers to pull a
 * local model that is not installed yet.
 */
export function modelPicker(current, choose) {
  const select = h('select', { class: 'model-select', 'aria-label': 'Model' });
  const pull = h('button', { type: 'button', class: 'ghost small', hidden: true }, 'Pull');
  const progress = h('progress', { hidden: true, max: 1, value: 0 });
  const note = h('span', { class: 'hint' });
  const actions = h('div', { class: 'row' }, pull, progress, note);
  const redraw = () => {
    const chosen = current();
    const local = list.filter((m) => m.temper?.source === 'catalog' && m.temper.kind !== 'embedding');
    const remote = list.filter((m) => m.temper?.source === 'profile');
    const option = (m) => h('option', { value: m.id, selected: m.id === chosen || undefined }, describe(m));
    const groups = [h('optgroup', { label: 'Local models' }, local.map(option))];
    if (remote.length) groups.push(h('optgroup', { label: 'Profiles (temper.toml)' }, remote.map(option)));
    if (chosen && !list.some((m) => m.id === chosen)) {
      groups.push(h('optgroup', { label: 'Other' }, h('option', { value: chosen, selected: true }, chosen)));
    }
    replace(select, groups);
    select.value = chosen ?? '';
    const entry = list.find((m) => m.id === chosen);
    pull.hidden = !(entry?.temper?.source === 'catalog' && !entry.temper.installed);
    actions.hidden = pull.hidden && progress.hidden;
  };
  select.addEventListener('change', () => {
    choose(select.value);
    redraw();
  });
  pull.addEventListener('click', async () => {
    pull.disabled = true;
    progress.hidden = false;
    try {
      await pullModel(select.value, (done, total, stage) => {
        progress.max = total || 1;
        progress.value = done;
        note.textContent = total ? `${stage} ${fmt((100 * done) / total, 0)}%` : stage;
      });
      note.textContent = 'installed';
      await refreshModels();
    } catch (error) {
      note.textContent = error.describe?.() ?? error.message;
    } finally {
      pull.disabled = false;
      progress.hidden = true;
    }
  });
  listeners.add(redraw);
  redraw();
  const node = h('div', { class: 'model-picker' }, select, actions);
  // A picker taken off the page stops being redrawn.
  node.dispose = () => listeners.delete(redraw);
  return node;
}

async function pullModel(name, onProgress) {
  const response = await request(`/api/models/${encodeURIComponent(name)}/pull`, { method: 'POST' });
  await readEvents(response, (event) => {
    if (event.type === 'progress') onProgress(event.done, event.total, event.stage);
  });
}

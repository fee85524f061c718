// The generation parameters: one control per parameter of Temper's GenerationParams. A parameter
// left unset is not sent, and the model uses its default (shown greyed, as the local engine's).

import { h, replace } from './dom.js';

/** Every numeric parameter, with its range and the local engine's default. */
export const NUMERIC = [
  { name: 'temperature', label: 'Temperature', min: 0, max: 2, step: 0.05, engine: 0.8, hint: '0 always picks the likeliest token; higher is more varied' },
  { name: 'top_p', label: 'Top-p', min: 0.01, max: 1, step: 0.01, engine: 0.95, hint: 'keep the likeliest tokens whose probabilities add up to this' },
  { name: 'top_k', label: 'Top-k', min: 0, max: 200, step: 1, engine: 40, integer: true, hint: 'keep only this many likeliest tokens; 0 keeps all' },
  { name: 'min_p', label: 'Min-p', min: 0, max: 1, step: 0.01, engine: 0.05, hint: 'drop tokens less likely than this times the likeliest' },
  { name: 'repeat_penalty', label: 'Repeat penalty', min: 0.5, max: 2, step: 0.01, engine: 1, hint: 'divide the logits of recent tokens by this; 1 is off' },
  { name: 'frequency_penalty', label: 'Frequency penalty', min: -2, max: 2, step: 0.05, engine: 0, hint: 'lower a token more each time it was generated' },
  { name: 'presence_penalty', label: 'Presence penalty', min: -2, max: 2, step: 0.05, engine: 0, hint: 'lower every token already generated' },
  { name: 'max_tokens', label: 'Max tokens', min: 1, max: 2048, step: 1, integer: true, engine: null, hint: 'the most tokens to generate' },
  { name: 'context_window', label: 'Context window', min: 64, max: 32768, step: 64, integer: true, engine: null, slider: false, hint: 'tokens of prompt and answer together; at most what the model was loaded with' },
  { name: 'seed', label: 'Seed', min: 0, max: Number.MAX_SAFE_INTEGER, step: 1, integer: true, engine: null, slider: false, hint: 'the same seed and parameters give the same answer' },
];

/** The parameters as the request sends them: only those set. */
export function sentParams(params) {
  const sent = {};
  for (const { name } of NUMERIC) if (params[name] !== undefined) sent[name] = params[name];
  if (params.stop?.length) sent.stop = params.stop;
  return sent;
}

/** A short label of the parameters set, such as "temperature 0.7 · max_tokens 160". */
export function describeParams(params) {
  const sent = sentParams(params);
  const parts = Object.entries(sent).map(([name, value]) =>
    name === 'stop' ? `stop ${value.map(showStop).join(' ')}` : `${name} ${value}`,
  );
  return parts.length ? parts.join(' · ') : 'model defaults';
}

/** A stop string with its newlines and tabs shown, as the user types them. */
export function showStop(stop) {
  return JSON.stringify(stop).slice(1, -1);
}

/** What a user types for a stop string: `\n` and `\t` stand for a newline and a tab. */
function readStop(text) {
  return text.replace(/\\n/g, '\n').replace(/\\t/g, '\t');
}

/**
 * Fills `container` with a control for each parameter of `params` (changed in place);
 * `changed()` is called after every change.
 */
export function renderParams(container, params, changed) {
  const control = (name) => numericControl(NUMERIC.find((spec) => spec.name === name), params, changed);
  const group = (title, ...controls) => h('section', { class: 'param-group' }, h('h3', {}, title), controls);
  replace(
    container,
    group('Sampling', ['temperature', 'top_p', 'top_k', 'min_p'].map(control)),
    group('Penalties', ['repeat_penalty', 'frequency_penalty', 'presence_penalty'].map(control)),
    group('Length', control('max_tokens'), stopControl(params, changed), control('context_window')),
    group('Repeatability', control('seed')),
  );
}

function numericControl(spec, params, changed) {
  const id = `param-${spec.name}`;
  const value = h('input', {
    id,
    type: 'number',
    class: 'param-value',
    min: spec.min,
    max: spec.max,
    step: spec.step,
    placeholder: spec.engine === null ? (spec.name === 'seed' ? 'random' : 'model’s') : String(spec.engine),
    inputmode: spec.integer ? 'numeric' : 'decimal',
  });
  const slider =
    spec.slider === false
      ? null
      : h('input', { type: 'range', min: spec.min, max: spec.max, step: spec.step, 'aria-label': spec.label, tabindex: -1 });
  const reset = h('button', { type: 'button', class: 'reset', title: 'Unset: the model’s default', 'aria-label': `Unset ${spec.label}` }, '×');
  const row = h(
    'div',
    { class: 'param', dataset: { param: spec.name }, title: spec.hint },
    h('div', { class: 'param-head' }, h('label', { for: id }, spec.label), value, reset),
    slider,
  );
  const show = () => {
    const current = params[spec.name];
    const set = current !== undefined;
    row.classList.toggle('unset', !set);
    row.classList.remove('invalid');
    if (document.activeElement !== value) value.value = set ? String(current) : '';
    if (slider) slider.value = String(set ? current : (spec.engine ?? spec.min));
    reset.hidden = !set;
  };
  const set = (next) => {
    if (next === undefined) delete params[spec.name];
    else params[spec.name] = next;
    show();
    changed();
  };
  value.addEventListener('input', () => {
    if (value.value.trim() === '') return set(undefined);
    const number = Number(value.value);
    const ok = Number.isFinite(number) && number >= spec.min && number <= spec.max && (!spec.integer || Number.isInteger(number));
    if (!ok) {
      row.classList.add('invalid');
      value.title = `${spec.label} takes ${spec.integer ? 'a whole number' : 'a number'} from ${spec.min} to ${spec.max}`;
      return;
    }
    value.title = '';
    set(number);
  });
  value.addEventListener('blur', show);
  slider?.addEventListener('input', () => set(spec.integer ? parseInt(slider.value, 10) : Number(slider.value)));
  reset.addEventListener('click', () => set(undefined));
  show();
  return row;
}

function stopControl(params, changed) {
  const chips = h('ul', { class: 'chips' });
  const input = h('input', { id: 'param-stop', class: 'stop-input', placeholder: 'add, then Enter (\\n is a newline)', autocomplete: 'off' });
  const show = () => {
    replace(
      chips,
      (params.stop ?? []).map((stop, i) =>
        h(
          'li',
          { class: 'chip' },
          h('code', {}, showStop(stop)),
          h('button', { type: 'button', 'aria-label': `Remove stop ${showStop(stop)}`, onclick: () => remove(i) }, '×'),
        ),
      ),
    );
  };
  const remove = (i) => {
    params.stop.splice(i, 1);
    if (params.stop.length === 0) delete params.stop;
    show();
    changed();
  };
  input.addEventListener('keydown', (event) => {
    if (event.key !== 'Enter' || event.isComposing) return;
    event.preventDefault();
    const stop = readStop(input.value);
    if (stop === '') return;
    params.stop = [...(params.stop ?? []).filter((s) => s !== stop), stop].slice(-16);
    input.value = '';
    show();
    changed();
  });
  show();
  return h(
    'div',
    { class: 'param param-stop', title: 'generation ends just before the first of these strings' },
    h('div', { class: 'param-head' }, h('label', { for: 'param-stop' }, 'Stop sequences')),
    chips,
    input,
  );
}

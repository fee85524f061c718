// The prompt: the system message and the few-shot examples; the final prompt the model receives
// (POST /api/render); and prompt files, saved and opened (POST /api/prompt-file/export, import).

import { $, h, replace, fmt, toast, download } from './dom.js';
import { json, ApiFailure } from './api.js';
import { state, activeLane, examplePrompt, completeExamples, messagesFor, save } from './state.js';
import { sentParams } from './params.js';
import { renderAll, isRunning } from './chat.js';

export function initPrompt() {
  $('system').addEventListener('input', () => {
    state.system = $('system').value;
    save();
  });
  $('add-example').addEventListener('click', () => {
    state.examples.push({ prompt: '', response: '' });
    save();
    renderExamples();
    $('examples').lastElementChild?.querySelector('textarea')?.focus();
  });
  $('reset-prompt').addEventListener('click', () => {
    const example = examplePrompt();
    Object.assign(state, { system: example.system, examples: example.examples, variable: 'input', kept: {} });
    activeLane().params = example.params;
    save();
    renderPrompt();
    renderAll();
  });
  $('show-final-prompt').addEventListener('click', showFinalPrompt);
  $('save-prompt-file').addEventListener('click', savePromptFile);
  $('open-prompt-file').addEventListener('click', () => $('prompt-file-input').click());
  $('prompt-file-input').addEventListener('change', openPromptFile);
  renderPrompt();
}

export function renderPrompt() {
  $('system').value = state.system;
  renderExamples();
}

function renderExamples() {
  replace(
    $('examples'),
    state.examples.map((example, i) => {
      const field = (key, label, placeholder) => {
        const area = h('textarea', { rows: 2, placeholder, 'aria-label': `Example ${i + 1} ${label}` });
        area.value = example[key];
        area.addEventListener('input', () => {
          example[key] = area.value;
          item.classList.toggle('incomplete', !complete());
          save();
        });
        return h('label', { class: `example-${key}` }, h('span', { class: 'role' }, label), area);
      };
      const complete = () => example.prompt.trim() !== '' && example.response.trim() !== '';
      const remove = h('button', { type: 'button', class: 'remove ghost small', 'aria-label': `Remove example ${i + 1}`, title: 'Remove this example' }, '×');
      remove.addEventListener('click', () => {
        state.examples.splice(i, 1);
        save();
        renderExamples();
      });
      const item = h(
        'li',
        { class: complete() ? 'example' : 'example incomplete', title: 'An example is sent only with both halves written' },
        h('div', { class: 'example-head' }, h('span', {}, `Example ${i + 1}`), remove),
        field('prompt', 'User', 'what the user says'),
        field('response', 'Assistant', 'what the model should answer'),
      );
      return item;
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// The final prompt

async function showFinalPrompt() {
  const lane = activeLane();
  const dialog = $('final-prompt-dialog');
  const text = $('final-prompt-text');
  const sub = $('final-prompt-sub');
  const meter = $('final-prompt-meter');
  const body = { model: lane.model, messages: messagesFor(lane, $('message').value), params: sentParams(lane.params) };
  $('final-prompt-title').textContent = state.lanes.length > 1 ? `Final prompt for ${lane.id}` : 'Final prompt';
  sub.textContent = `rendering for ${lane.model}…`;
  text.replaceChildren();
  meter.hidden = true;
  dialog.showModal();
  try {
    const rendered = await json('/api/render', { method: 'POST', body });
    const share = rendered.tokens / rendered.context_window;
    sub.replaceChildren(
      h('b', { id: 'final-prompt-tokens' }, fmt(rendered.tokens, 0)),
      ' tokens of a ',
      h('b', { id: 'final-prompt-window' }, fmt(rendered.context_window, 0)),
      `-token context window (${fmt(100 * share, 1)}%) · ${rendered.model} · after its chat template, with the message you are writing`,
    );
    meter.hidden = false;
    meter.classList.toggle('over', share > 1);
    meter.firstElementChild.style.width = `${Math.min(100, 100 * share)}%`;
    replace(text, markSpecialTokens(rendered.text));
  } catch (error) {
    sub.replaceChildren(h('span', { class: 'error-text' }, error instanceof ApiFailure ? error.describe() : error.message));
  }
}

/** The text with the template's special tokens (`<|im_start|>`, `<start_of_turn>`…) set apart. */
function markSpecialTokens(text) {
  return text.split(/(<\|[^|>\s]{1,40}\|>|<(?:start|end)_of_turn>|<\/?s>|\[\/?INST\])/).map((piece, i) =>
    i % 2 === 1 ? h('span', { class: 'special' }, piece) : piece,
  );
}

// ---------------------------------------------------------------------------------------------
// Prompt files

async function savePromptFile() {
  const lane = activeLane();
  const draft = $('message').value;
  const { description = 'Saved from the Temper playground.', vars = {}, template, ...kept } = state.kept;
  // The message being written is the default of the template's variable, so the file runs as is.
  const message = template === undefined && draft.trim() !== '' ? { [state.variable]: draft } : {};
  const body = {
    ...kept,
    description,
    system: state.system.trim() === '' ? undefined : state.system,
    examples: completeExamples(),
    template: template ?? `{{ ${state.variable} }}`,
    params: sentParams(lane.params),
    model: lane.model,
    vars: { ...vars, ...message },
  };
  try {
    const { toml } = await json('/api/prompt-file/export', { method: 'POST', body });
    download(new Blob([toml], { type: 'application/toml' }), 'prompt.toml');
    toast('saved prompt.toml', 'info');
  } catch (error) {
    toast(`cannot save the prompt file: ${error.describe?.() ?? error.message}`);
  }
}

async function openPromptFile() {
  const input = $('prompt-file-input');
  const file = input.files[0];
  input.value = '';
  if (!file || isRunning()) return;
  try {
    const toml = await file.text();
    const prompt = await json('/api/prompt-file/import', { method: 'POST', body: { toml } });
    applyPromptFile(prompt, file.name);
  } catch (error) {
    toast(`${file.name}: ${error.describe?.() ?? error.message}`);
  }
}

/** Puts an imported prompt file into the workspace. */
function applyPromptFile(prompt, name) {
  state.system = prompt.system ?? '';
  // Examples keep what the page does not edit (their reasoning).
  state.examples = prompt.examples ?? [];
  const lane = activeLane();
  lane.params = Object.fromEntries(Object.entries(prompt.params ?? {}).filter(([, value]) => value !== null));
  if (prompt.model) lane.model = prompt.model;
  // The message fills a template that is one variable. A richer template cannot be typed into
  // one message box: the message is sent as written, and the file keeps its template.
  const template = prompt.template ?? '{{ input }}';
  const single = /^\s*\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}\s*$/.exec(template);
  state.variable = single ? single[1] : 'input';
  const vars = { ...(prompt.vars ?? {}) };
  if (single && typeof vars[state.variable] === 'string') {
    $('message').value = vars[state.variable];
    delete vars[state.variable];
  }
  // What the page does not show is kept, and saved back with the file.
  state.kept = {
    description: prompt.description ?? undefined,
    template: single ? undefined : template,
    vars,
    output_schema: prompt.output_schema ?? undefined,
    tests: prompt.tests ?? [],
  };
  if (single) toast(`opened ${name}`, 'info');
  else toast(`${name}: its template is more than one variable; messages are sent as you write them, and saving keeps the template`, 'info');
  save();
  renderPrompt();
  renderAll();
}

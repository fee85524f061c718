// The playground's entry point: the views (Chat, Documents, Evals, chosen by the address's
// #fragment), the API key, and the server's status.

import { $, toast } from './dom.js';
import { apiKey, setApiKey, onUnauthorized, json } from './api.js';
import { refreshModels, defaultModel } from './models.js';
import { load } from './state.js';
import { initChat } from './chat.js';
import { initPrompt } from './prompt.js';
import { initRag, showRag } from './rag.js';
import { initEvals, showEvals } from './evals.js';

const VIEWS = { chat: null, rag: showRag, evals: showEvals };

function showView(name) {
  const view = name in VIEWS ? name : 'chat';
  document.querySelectorAll('[role=tab][data-view]').forEach((tab) => tab.setAttribute('aria-selected', String(tab.dataset.view === view)));
  for (const other of Object.keys(VIEWS)) $(`view-${other}`).hidden = other !== view;
  VIEWS[view]?.();
}

function initViews() {
  document.querySelectorAll('[role=tab][data-view]').forEach((tab) =>
    tab.addEventListener('click', () => {
      history.replaceState(null, '', `#${tab.dataset.view}`);
      showView(tab.dataset.view);
    }),
  );
  window.addEventListener('hashchange', () => showView(location.hash.slice(1)));
}

function initSettings() {
  const dialog = $('settings-dialog');
  $('open-settings').addEventListener('click', () => {
    $('api-key').value = apiKey();
    dialog.showModal();
  });
  dialog.addEventListener('close', () => {
    if (dialog.returnValue === 'save') setApiKey($('api-key').value.trim());
    if (dialog.returnValue === 'forget') setApiKey('');
    if (dialog.returnValue === 'save' || dialog.returnValue === 'forget') start();
  });
  onUnauthorized(() => {
    if (!dialog.open) {
      $('api-key').value = apiKey();
      dialog.showModal();
    }
  });
}

/** Polls /health until the server has loaded its models. */
async function watchHealth() {
  const status = $('server-status');
  for (;;) {
    try {
      const health = await fetch('/health');
      if (health.ok) {
        status.textContent = 'ready';
        status.dataset.state = 'ready';
        return;
      }
      status.textContent = 'loading models…';
      status.dataset.state = 'loading';
    } catch {
      status.textContent = 'server unreachable';
      status.dataset.state = 'down';
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

let started = false;
/** Loads the models, then the workspace; again after a new API key. */
async function start() {
  try {
    await refreshModels();
  } catch (error) {
    toast(`cannot list the models: ${error.describe?.() ?? error.message}`);
    return;
  }
  if (started) return;
  started = true;
  load(defaultModel());
  initPrompt();
  initChat();
  initRag();
  initEvals();
  showView(location.hash.slice(1));
}

initViews();
initSettings();
watchHealth();
start();

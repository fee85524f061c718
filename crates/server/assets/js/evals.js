// Evals: the HTML reports `temper eval run --html` wrote into the server's reports directory.

import { $, h, replace, fmt, toast, download } from './dom.js';
import { json, request, apiKey } from './api.js';

export function initEvals() {
  $('refresh-reports').addEventListener('click', showEvals);
}

export async function showEvals() {
  let reports = [];
  try {
    reports = (await json('/api/eval/reports')).reports;
  } catch (error) {
    toast(`cannot list the reports: ${error.describe?.() ?? error.message}`);
  }
  replace(
    $('reports'),
    reports.length
      ? reports.map((report) =>
          h(
            'li',
            {},
            h(
              'button',
              { type: 'button', class: 'report', onclick: (event) => openReport(report.name, event.currentTarget) },
              h('span', { class: 'report-name' }, report.name),
              h('span', { class: 'hint' }, `${when(report.modified)} · ${size(report.bytes)}`),
            ),
          ),
        )
      : h('li', { class: 'empty' }, 'No reports yet.'),
  );
}

async function openReport(name, button) {
  document.querySelectorAll('#reports .report').forEach((b) => b.setAttribute('aria-pressed', String(b === button)));
  const path = `/api/eval/reports/${encodeURIComponent(name)}`;
  if (apiKey()) {
    // A frame cannot send the key: fetch the report and save it instead.
    try {
      download(await (await request(path)).blob(), name);
    } catch (error) {
      toast(`${name}: ${error.describe?.() ?? error.message}`);
    }
    return;
  }
  $('report-empty').hidden = true;
  $('report-frame').hidden = false;
  $('report-frame').src = path;
}

function when(modified) {
  const date = typeof modified === 'number' ? new Date(modified * 1000) : new Date(modified);
  return Number.isNaN(date.getTime()) ? String(modified) : date.toLocaleString();
}

function size(bytes) {
  return bytes >= 1024 * 1024 ? `${fmt(bytes / 1024 / 1024)} MB` : `${fmt(bytes / 1024)} kB`;
}

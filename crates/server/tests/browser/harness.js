// What the browser tests share: the real `temper serve` (the release binary, the default model,
// a temporary RAG store and reports folder), headless Chromium through playwright-core, pages
// whose console errors are collected, and screenshots for a reviewer.

import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';

export const ROOT = path.resolve(import.meta.dirname, '../../../..');
export const TEMPER = process.env.TEMPER_BIN ?? path.join(ROOT, 'target/release/temper');
export const SCREENSHOTS = path.join(ROOT, 'target/screenshots');
const CHROMIUM = '/usr/bin/chromium';

/** A fresh temporary folder, removed by `cleanup()`. */
export function scratch(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `temper-browser-${prefix}-`));
}

/** Runs the temper CLI; resolves to { stdout, stderr } or rejects with both in the message. */
export async function temper(args, options = {}) {
  try {
    return await promisify(execFile)(TEMPER, args, { maxBuffer: 16 << 20, timeout: 120_000, ...options });
  } catch (error) {
    throw new Error(`temper ${args.join(' ')} failed: ${error.message}\n${error.stderr ?? ''}`);
  }
}

/**
 * Starts `temper serve --port 0` and resolves once it is listening and /health says ready:
 * { url, stop(), log() }.
 */
export async function startServer(args) {
  if (!fs.existsSync(TEMPER)) {
    throw new Error(`${TEMPER} is missing: build it first with cargo build --release -p temper-cli`);
  }
  const child = spawn(TEMPER, ['serve', '--port', '0', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`temper serve did not start in 60 s:\n${log}`)), 60_000);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (text) => {
      log += text;
      const match = /temper serve: listening on (http:\/\/\S+)/.exec(log);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`temper serve exited with ${code}:\n${log}`));
    });
  });
  for (let tries = 0; ; tries += 1) {
    const health = await fetch(`${url}/health`).catch(() => null);
    if (health?.ok) break;
    if (tries > 600) throw new Error(`temper serve never became ready:\n${log}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    url,
    log: () => log,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** The sum of temper_queue_depth over the loaded models, from GET /metrics. */
export async function queueDepth(url) {
  const text = await (await fetch(`${url}/metrics`)).text();
  return text
    .split('\n')
    .filter((line) => line.startsWith('temper_queue_depth{'))
    .reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0);
}

/**
 * Headless Chromium with a fresh profile. The flags keep it from reaching out on its own (this
 * machine's network refuses it, and tests must not depend on it).
 */
export async function launchBrowser() {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: scripts/test-browser installs it`);
  const profile = scratch('profile');
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1440, height: 900 },
    acceptDownloads: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  return {
    context,
    close: async () => {
      await context.close();
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * A new page on the playground with an empty workspace; `errors` collects every console error
 * and uncaught exception the page has, which the tests expect to stay empty.
 */
export async function openPlayground(context, url, errors, fragment = '') {
  const page = await context.newPage();
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (error) => errors.push(`page: ${error.message}`));
  await page.goto(`${url}/`);
  await page.evaluate(() => localStorage.clear());
  await page.goto(`${url}/#${fragment}`);
  await page.reload();
  await page.waitForSelector('#params .param', { state: 'attached' });
  return page;
}

export async function screenshot(page, name) {
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`) });
}

/** Sets a parameter through its number field, as a user types it (empty unsets it). */
export async function setParam(page, name, value) {
  await page.fill(`#param-${name}`, String(value));
  await page.locator(`#param-${name}`).blur();
}

/** Types a message and sends it with Enter; resolves to the JSON body of each request sent. */
export async function send(page, text, lanes = 1) {
  const bodies = [];
  const listener = (request) => {
    if (request.method() === 'POST' && new URL(request.url()).pathname === '/v1/chat/completions') {
      bodies.push(request.postDataJSON());
    }
  };
  page.on('request', listener);
  const expected = (await page.locator('.message.assistant').count()) + lanes;
  await page.fill('#message', text);
  await page.press('#message', 'Enter');
  await page.waitForFunction(
    (n) => document.querySelectorAll('.message.assistant').length >= n && !document.querySelector('.message.assistant.streaming'),
    expected,
    { timeout: 120_000 },
  );
  page.off('request', listener);
  return bodies;
}

/**
 * Records, in the page, every text each lane's streaming answer shows (`window.answerTexts`,
 * by lane) and whether two answers were streaming with text at the same moment
 * (`window.overlapped`).
 */
export async function watchAnswers(page) {
  await page.evaluate(() => {
    window.answerTexts = { A: [], B: [] };
    window.overlapped = false;
    new MutationObserver(() => {
      let withText = 0;
      for (const message of document.querySelectorAll('.message.assistant.streaming')) {
        const lane = message.closest('.lane')?.dataset.lane ?? 'A';
        const text = message.querySelector('.message-body').textContent;
        if (text && !text.startsWith('waiting for')) {
          withText += 1;
          if (window.answerTexts[lane].at(-1) !== text) window.answerTexts[lane].push(text);
        }
      }
      if (withText > 1) window.overlapped = true;
    }).observe(document.getElementById('lanes'), { subtree: true, childList: true, characterData: true });
  });
}

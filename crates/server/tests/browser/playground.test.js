// The playground in headless Chromium against the real `temper serve` and the real default
// model. Run by scripts/test-browser (after `cargo build --release -p temper-cli`):
//   cd crates/server/tests/browser && npm ci && node --test
// Screenshots of each view land in target/screenshots/ for a reviewer.

import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  ROOT,
  scratch,
  temper,
  startServer,
  queueDepth,
  launchBrowser,
  openPlayground,
  screenshot,
  setParam,
  send,
  watchAnswers,
} from './harness.js';

let server;
let browser;
let folders;
/** Console errors and uncaught exceptions of every page; each test ends with none. */
const errors = [];

before(async () => {
  folders = { rag: scratch('rag'), reports: scratch('reports'), files: scratch('files') };
  // A real report, as `temper eval run --html` writes it, for the Evals view.
  await temper(['eval', 'run', path.join(ROOT, 'examples/prompts/classify-sentiment.toml'), '--html', path.join(folders.reports, 'sentiment.html')]);
  [server, browser] = await Promise.all([
    startServer(['--rag-db', path.join(folders.rag, 'rag.db'), '--reports', folders.reports]),
    launchBrowser(),
  ]);
});

after(async () => {
  await browser?.close();
  await server?.stop();
  for (const folder of Object.values(folders ?? {})) fs.rmSync(folder, { recursive: true, force: true });
});

afterEach(async () => {
  for (const page of browser.context.pages()) await page.close();
  const seen = errors.splice(0);
  assert.deepEqual(seen, [], 'the page logged errors');
});

const answers = (page) => page.locator('.message.assistant .message-body');

test('a message streams its answer token by token, with counts, speed and cost', async () => {
  const page = await openPlayground(browser.context, server.url, errors);
  await setParam(page, 'max_tokens', 24);
  await watchAnswers(page);
  const [body] = await send(page, 'Write a short poem about the sea.');
  const shown = (await page.evaluate(() => window.answerTexts)).A;
  const final = await answers(page).first().textContent();
  assert.ok(shown.length >= 3, `the answer appeared in ${shown.length} steps, not streamed: ${JSON.stringify(shown)}`);
  assert.ok(shown[0].length < final.length, `${shown[0]} came before ${final}`);
  // The request carried the prompt: the system message, the three example pairs, the message.
  assert.equal(body.stream, true);
  assert.deepEqual(body.messages.map((m) => m.role), ['system', 'user', 'assistant', 'user', 'assistant', 'user', 'assistant', 'user']);
  assert.match(body.messages[0].content, /Shakespeare/);
  assert.equal(body.max_tokens, 24);
  // The figures under the answer come from the server's usage and timings.
  const stats = await page.locator('.message.assistant .stats').first().textContent();
  const tokens = Number(/(\d+) tokens/.exec(stats)?.[1]);
  assert.ok(tokens >= 1 && tokens <= 24, stats);
  assert.match(stats, /\d+ prompt/);
  assert.match(stats, /[\d.]+ tok\/s/);
  assert.match(stats, /no cost/);
  await page.fill('#message', 'Now make it rhyme.');
  await screenshot(page, 'chat');
});

test('Enter sends and Shift+Enter adds a line', async () => {
  const page = await openPlayground(browser.context, server.url, errors);
  await setParam(page, 'max_tokens', 4);
  await page.click('#message');
  await page.keyboard.type('first line');
  await page.keyboard.press('Shift+Enter');
  await page.keyboard.type('second line');
  assert.equal(await page.inputValue('#message'), 'first line\nsecond line');
  assert.equal(await page.locator('.message').count(), 0);
  const [body] = await send(page, 'first line\nsecond line');
  assert.equal(body.messages.at(-1).content, 'first line\nsecond line');
  assert.equal(await page.locator('.message.user .message-body').textContent(), 'first line\nsecond line');
});

test('Stop ends the stream and frees the server’s slot', async () => {
  const page = await openPlayground(browser.context, server.url, errors);
  await setParam(page, 'max_tokens', 2000);
  await setParam(page, 'temperature', 0);
  await page.fill('#message', 'Count from 1 to 1000, one number per line.');
  await page.press('#message', 'Enter');
  await page.waitForFunction(() => (document.querySelector('.message.assistant .message-body')?.textContent.length ?? 0) > 12);
  assert.equal(await queueDepth(server.url), 1, 'the answer holds a slot while it streams');
  await page.click('#stop');
  await page.waitForSelector('.message.assistant.stopped');
  const stopped = await answers(page).first().textContent();
  assert.ok(await page.locator('#send').isVisible());
  assert.match(await page.locator('.message.assistant .badge').first().textContent(), /stopped/);
  // The server cancels the generation when the client goes away: the slot is free at once,
  // long before 2000 tokens could have been generated.
  let depth = 1;
  for (let tries = 0; tries < 50 && depth !== 0; tries += 1) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    depth = await queueDepth(server.url);
  }
  assert.equal(depth, 0, 'the slot is still taken 5 s after Stop');
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(await answers(page).first().textContent(), stopped, 'nothing arrived after Stop');
});

test('the temperature control changes the request the server receives', async () => {
  const page = await openPlayground(browser.context, server.url, errors);
  await setParam(page, 'max_tokens', 4);
  const [first] = await send(page, 'Say hello.');
  assert.equal(first.temperature, 0.7, 'the example prompt’s temperature');
  await setParam(page, 'temperature', 1.3);
  assert.match(await page.textContent('#request-preview'), /"temperature": 1.3/);
  const [second] = await send(page, 'Say hello again.');
  assert.equal(second.temperature, 1.3);
  assert.match(await page.locator('.message.assistant .sent').nth(1).textContent(), /temperature 1\.3/);
  // The slider moves it too; the × unsets it, and then it is not sent at all.
  await page.locator('.param[data-param="temperature"] input[type=range]').fill('0.25');
  assert.equal(await page.inputValue('#param-temperature'), '0.25');
  await page.click('.param[data-param="temperature"] .reset');
  const [third] = await send(page, 'And once more.');
  assert.equal('temperature' in third, false, JSON.stringify(third));
  assert.equal(third.max_tokens, 4);
  assert.equal(third.seed, 7);
});

test('compare streams two parameter sets side by side', async () => {
  const page = await openPlayground(browser.context, server.url, errors);
  await setParam(page, 'max_tokens', 20);
  await page.click('#compare-toggle');
  // B is a copy of A; it gets its own temperature.
  await page.click('#lane-switch [role=tab]:has-text("B")');
  await setParam(page, 'temperature', 1.5);
  await page.click('#lane-switch [role=tab]:has-text("A")');
  await setParam(page, 'temperature', 0);
  await watchAnswers(page);
  const bodies = await send(page, 'Write a short poem about the moon.', 2);
  assert.deepEqual(bodies.map((b) => b.temperature).sort(), [0, 1.5]);
  for (const lane of ['A', 'B']) {
    const column = page.locator(`.lane[data-lane="${lane}"]`);
    assert.ok((await column.locator('.message.assistant .message-body').textContent()).length > 0, `${lane} answered`);
    const stats = await column.locator('.stats').textContent();
    assert.match(stats, /[\d.]+ s/, `${lane}: time`);
    assert.match(stats, /[\d.]+ tok\/s/, `${lane}: speed`);
    assert.match(stats, /no cost|\$/, `${lane}: cost`);
    assert.match(await column.locator('.lane-params').textContent(), lane === 'A' ? /temperature 0\b/ : /temperature 1\.5/);
  }
  // Streamed together: each side had shown text before the other had all of its answer.
  const shown = await page.evaluate(() => window.answerTexts);
  assert.ok(shown.A.length >= 2 && shown.B.length >= 2, JSON.stringify(shown));
  const finalA = await answers(page).nth(0).textContent();
  const finalB = await answers(page).nth(1).textContent();
  const partialOf = (texts, final) => texts.filter((t) => t.length < final.length);
  assert.ok(partialOf(shown.A, finalA).length > 0 && partialOf(shown.B, finalB).length > 0, JSON.stringify(shown));
  const overlap = await page.evaluate(() => window.overlapped);
  assert.ok(overlap, 'one side finished before the other had started');
  await screenshot(page, 'compare');
});

/** Clicks "Save as prompt file" and returns the saved file's path and text. */
async function savePromptFile(page, name) {
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#save-prompt-file')]);
  const file = path.join(folders.files, name);
  await download.saveAs(file);
  return { file, text: fs.readFileSync(file, 'utf8') };
}

test('the final prompt is what `temper prompt render --final` prints', async () => {
  const page = await openPlayground(browser.context, server.url, errors);
  await page.fill('#message', 'Write a toast for a wedding.');
  await page.click('#show-final-prompt');
  await page.waitForSelector('#final-prompt-tokens');
  const shown = await page.textContent('#final-prompt-text');
  const tokens = Number((await page.textContent('#final-prompt-tokens')).replace(/,/g, ''));
  const window = Number((await page.textContent('#final-prompt-window')).replace(/,/g, ''));
  await screenshot(page, 'final-prompt');
  await page.click('#final-prompt-dialog button[value="close"]');
  assert.equal(await page.locator('#final-prompt-dialog[open]').count(), 0);
  // The same prompt saved as a file and rendered by the CLI.
  const { file } = await savePromptFile(page, 'final.toml');
  const rendered = await temper(['prompt', 'render', file, '--final']);
  assert.equal(shown, rendered.stdout);
  assert.match(shown, /Write a toast for a wedding\./);
  assert.match(shown, /Good friend, thy kind bidding/);
  const counted = /(\d+) tokens for \S+ \(context window (\d+)\)/.exec(rendered.stderr);
  assert.ok(counted, rendered.stderr);
  assert.deepEqual([tokens, window], [Number(counted[1]), Number(counted[2])]);
});

test('a saved prompt file runs with `temper prompt run` and opens back unchanged', async () => {
  const page = await openPlayground(browser.context, server.url, errors);
  await page.fill('#system', 'You answer in one short sentence.');
  await page.click('.example .remove'); // two examples left
  await page.click('#add-example');
  await page.locator('.example').last().locator('textarea').first().fill('What colour is snow?');
  await page.locator('.example').last().locator('textarea').last().fill('Snow is white.');
  await setParam(page, 'temperature', 0);
  await setParam(page, 'max_tokens', 12);
  await page.fill('#param-stop', '\\n\\n');
  await page.press('#param-stop', 'Enter');
  await page.fill('#message', 'What colour is grass?');
  const sent = await page.evaluate(async () => {
    const { state, messagesFor } = await import('/assets/js/state.js');
    return messagesFor(state.lanes[0], document.getElementById('message').value);
  });
  const { file, text } = await savePromptFile(page, 'saved.toml');
  assert.match(text, /temperature = 0/);

  const run = JSON.parse((await temper(['prompt', 'run', file, '--json'])).stdout);
  assert.deepEqual(run.messages.map(({ role, content }) => ({ role, content })), sent);
  assert.ok(run.answer.text.trim().length > 0, JSON.stringify(run));

  // Opened in a fresh workspace, the file gives back the same prompt, parameters and message.
  const fresh = await openPlayground(browser.context, server.url, errors);
  await fresh.click('#reset-prompt');
  await fresh.setInputFiles('#prompt-file-input', file);
  await fresh.waitForFunction(() => document.getElementById('system').value === 'You answer in one short sentence.');
  assert.equal(await fresh.locator('.example').count(), 3);
  assert.equal(await fresh.locator('.example').last().locator('textarea').last().inputValue(), 'Snow is white.');
  assert.equal(await fresh.inputValue('#param-temperature'), '0');
  assert.equal(await fresh.inputValue('#param-max_tokens'), '12');
  assert.equal(await fresh.inputValue('#param-seed'), '7');
  assert.equal(await fresh.locator('.param-stop .chip code').textContent(), '\\n\\n');
  assert.equal(await fresh.inputValue('#message'), 'What colour is grass?');
  const again = await savePromptFile(fresh, 'again.toml');
  assert.equal(again.text, text, 'saving the opened file gives the same file');
});

test('opening a prompt file keeps what the page does not show, and saves it back', async () => {
  const page = await openPlayground(browser.context, server.url, errors);
  await page.setInputFiles('#prompt-file-input', path.join(ROOT, 'examples/prompts/shakespeare-example.toml'));
  // The file's template is `{{ request }}`: its default fills the message box.
  await page.waitForFunction(() => document.getElementById('message').value === 'Write a short poem about the sea.');
  assert.equal(await page.locator('.example').count(), 1);
  const { file, text } = await savePromptFile(page, 'shakespeare.toml');
  assert.match(text, /Writes in the style of Shakespeare, shown by an example exchange\./);
  assert.match(text, /\{\{ request \}\}/);
  assert.match(text, /\[\[tests\]\]/);
  const original = await temper(['prompt', 'render', path.join(ROOT, 'examples/prompts/shakespeare-example.toml'), '--json']);
  const saved = await temper(['prompt', 'render', file, '--json']);
  assert.deepEqual(JSON.parse(saved.stdout), JSON.parse(original.stdout));
});

const XSS = ['<script>window.pwned = 1</script>', '<img src=x onerror="window.pwned = 2">'];

/** Nothing the tests fed in ran or became markup. */
async function assertInert(page, where) {
  assert.equal(await page.evaluate(() => window.pwned), undefined, `${where}: a script ran`);
  const injected = await page.evaluate(() => document.querySelectorAll('main img, main script, dialog img, dialog script').length);
  assert.equal(injected, 0, `${where}: markup was inserted`);
}

test('markup in an answer stays text', async () => {
  const page = await openPlayground(browser.context, server.url, errors);
  await page.fill('#system', 'You repeat the user’s text exactly, character for character, and nothing else.');
  await page.click('.example .remove');
  await page.click('.example .remove');
  await page.locator('.example textarea').first().fill('<b>Hello</b> <i>there</i>');
  await page.locator('.example textarea').last().fill('<b>Hello</b> <i>there</i>');
  await setParam(page, 'temperature', 0);
  await setParam(page, 'max_tokens', 40);
  for (const [i, attack] of XSS.entries()) {
    await send(page, attack);
    const answer = await answers(page).nth(i).textContent();
    assert.ok(answer.includes('<') && answer.includes('>'), `the model did not echo markup: ${answer}`);
    await assertInert(page, `answer ${i}`);
  }
  // The Markdown renderer keeps links to http(s) only and never loads images.
  const rendered = await page.evaluate(async () => {
    const { renderMarkdown } = await import('/assets/js/markdown.js');
    const box = document.createElement('div');
    box.append(renderMarkdown('[a](javascript:window.pwned=3) [b](https://example.org/x) ![c](x.png) **<img src=x>**'));
    return { links: [...box.querySelectorAll('a')].map((a) => a.href), html: box.innerHTML };
  });
  assert.deepEqual(rendered.links, ['https://example.org/x']);
  assert.ok(!rendered.html.includes('<img'), rendered.html);
  await assertInert(page, 'markdown');
});

test('Markdown answers render as structure', async () => {
  const page = await openPlayground(browser.context, server.url, errors);
  const structure = await page.evaluate(async () => {
    const { renderMarkdown } = await import('/assets/js/markdown.js');
    const box = document.createElement('div');
    box.append(renderMarkdown('## Title\n\nSome *soft* and **strong** `code`.\nNext line.\n\n- one\n- two\n  - nested\n\n1. first\n2. second\n\n> quoted\n\n```rust\nfn main() {}\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |'));
    const tags = (selector) => [...box.querySelectorAll(selector)].map((n) => n.textContent);
    return {
      heading: tags('h4'),
      em: tags('em'),
      strong: tags('strong'),
      code: tags('p code'),
      breaks: box.querySelectorAll('p br').length,
      items: tags(':scope > ul > li').map((t) => t.trim()),
      nested: tags('ul ul li'),
      ordered: tags('ol li'),
      quote: tags('blockquote'),
      block: tags('pre code'),
      cells: tags('td'),
    };
  });
  assert.deepEqual(structure, {
    heading: ['Title'],
    em: ['soft'],
    strong: ['strong'],
    code: ['code'],
    breaks: 1,
    items: ['one', 'twonested'],
    nested: ['nested'],
    ordered: ['first', 'second'],
    quote: ['quoted'],
    block: ['fn main() {}'],
    cells: ['1', '2'],
  });
});

test('files uploaded to a collection answer questions with citations that open the passage', async () => {
  const page = await openPlayground(browser.context, server.url, errors, 'rag');
  await page.fill('#new-collection-name', 'harbour');
  await page.press('#new-collection-name', 'Enter');
  const upload = [
    {
      name: 'lighthouse.md',
      mimeType: 'text/markdown',
      buffer: Buffer.from(
        '# The Kettle Island lighthouse\n\nThe Kettle Island lighthouse was built in 1887 by the engineer Mara Quill. ' +
          'Its lamp burned whale oil until 1921, when it was converted to electricity.\n',
      ),
    },
    {
      name: 'xss.md',
      mimeType: 'text/markdown',
      buffer: Buffer.from(`# ${XSS[1]} ${XSS[0]}\n\nThe harbour ferry leaves every morning at seven for the mainland.\n`),
    },
  ];
  await page.setInputFiles('#upload-input', upload);
  await page.waitForSelector('#upload-results .ok >> nth=1');
  assert.match(await page.textContent('#upload-results'), /lighthouse\.md · \d+ chunks/);
  assert.match(await page.textContent('#collections'), /harbour\s*2 documents/);

  await page.fill('#question', 'Who built the Kettle Island lighthouse?');
  await page.press('#question', 'Enter');
  await page.waitForFunction(() => /cites/.test(document.getElementById('rag-stats').textContent), null, { timeout: 120_000 });
  const answer = await page.textContent('#rag-answer-text');
  assert.match(answer, /Quill/, answer);
  assert.match(await page.textContent('#rag-stats'), /cites \[\d+\]/);
  const cited = page.locator('.source.cited');
  assert.ok((await cited.count()) >= 1);
  assert.match(await cited.first().textContent(), /lighthouse\.md/);
  await screenshot(page, 'documents');
  // A citation in the answer opens the passage it cites.
  await page.locator('#rag-answer-text .cite').first().click();
  assert.match(await page.textContent('#passage-text'), /Mara Quill/);
  await assertInert(page, 'passage');
  await page.keyboard.press('Escape');

  // A document whose title is markup: shown as text wherever the title appears.
  await page.fill('#question', 'When does the harbour ferry leave?');
  await page.press('#question', 'Enter');
  await page.waitForFunction(() => /cites/.test(document.getElementById('rag-stats').textContent), null, { timeout: 120_000 });
  const titles = await page.locator('.source-title').allTextContents();
  assert.ok(titles.some((t) => t.includes(XSS[0]) && t.includes(XSS[1])), JSON.stringify(titles));
  await page.locator('.source-open', { hasText: '<script>' }).first().click();
  assert.match(await page.textContent('#passage-title'), /<img src=x onerror=/);
  await assertInert(page, 'document title');
});

test('eval reports are listed and open', async () => {
  const page = await openPlayground(browser.context, server.url, errors, 'evals');
  await page.click('.report:has-text("sentiment.html")');
  const frame = page.frameLocator('#report-frame');
  await frame.locator('h1').waitFor();
  assert.ok((await frame.locator('table').count()) >= 1, 'the report shows its table');
  await screenshot(page, 'evals');
});

test('a server with an API key asks for it once and the page then works', async () => {
  const keyed = await startServer(['--api-key', 'sk-playground-test', '--rag-db', path.join(folders.rag, 'keyed.db'), '--reports', folders.reports]);
  try {
    const refused = [];
    const page = await browser.context.newPage();
    page.on('console', (message) => message.type() === 'error' && refused.push(message.text()));
    page.on('pageerror', (error) => errors.push(`page: ${error.message}`));
    await page.goto(`${keyed.url}/`);
    // The page itself needs no key; its first request to the API is refused, and it asks.
    await page.waitForSelector('#settings-dialog[open]');
    assert.ok(refused.every((text) => /401/.test(text)), JSON.stringify(refused));
    await page.fill('#api-key', 'sk-playground-test');
    await page.click('#settings-dialog button[value="save"]');
    await page.waitForSelector('#params .param');
    assert.equal(await page.evaluate(() => localStorage.getItem('temper.apiKey')), 'sk-playground-test');
    await setParam(page, 'max_tokens', 4);
    const [body] = await send(page, 'Hello.');
    assert.equal(body.max_tokens, 4);
    assert.equal(await page.locator('.message.assistant.done').count(), 1);
    assert.ok(refused.length > 0 && refused.every((text) => /401/.test(text)), JSON.stringify(refused));
  } finally {
    await keyed.stop();
  }
});

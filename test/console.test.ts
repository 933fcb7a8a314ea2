/**
 * The web console at `/` in a real headless Chromium (Debian's package, driven by
 * playwright-core) against the real server on a loopback port: both demo bases, a store of
 * 1,000+ adapters, one adapter whose labels are HTML, the admin token set.
 */
import assert from 'node:assert/strict';
import { cp, link, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { loadConfig } from '../src/config.js';
import { CONSOLE_CSP } from '../src/http/routes-console.js';
import { startServer, type RunningServer } from '../src/serve.js';
import { formatBytes } from '../web/src/format.js';
import { chromiumSkip, launchChromium, PageWatch } from './helpers/browser.js';
import { ROOT } from './helpers/demo.js';
import { getJson, metricValue, postJson, rawRequest, scrape } from './helpers/http-harness.js';

const TOKEN = 'console-test-admin-token-0123456789';
/** Copies of the spam adapter, so the tables and the try-it list hold more than 1,000 adapters. */
const BULK = 1000;
const bulkId = (i: number) => `zz-bulk-${String(i).padStart(4, '0')}`;
const XSS_ID = 'xss-labels';
const XSS_LABELS = ['<img src=x onerror=alert(1)>', '<b>bold</b>"\'&amp;'];
const SCREENSHOTS = path.join(ROOT, 'dist/screenshots');

/** A store: the demo adapters, BULK hard-linked copies of spam, and spam's weights under HTML labels. */
async function makeEncoderStore(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'adapterhost-console-'));
  await cp(path.join(ROOT, 'adapters'), dir, { recursive: true });
  const spam = path.join(dir, 'spam');
  const config = JSON.parse(await readFile(path.join(spam, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
  for (let i = 0; i < BULK; i++) {
    const d = path.join(dir, bulkId(i));
    await mkdir(d);
    await link(path.join(spam, 'adapter_config.json'), path.join(d, 'adapter_config.json'));
    await link(path.join(spam, 'adapter_model.safetensors'), path.join(d, 'adapter_model.safetensors'));
  }
  const xss = path.join(dir, XSS_ID);
  await mkdir(xss);
  await writeFile(path.join(xss, 'adapter_config.json'), JSON.stringify({ ...config, id2label: { 0: XSS_LABELS[0], 1: XSS_LABELS[1] } }));
  await link(path.join(spam, 'adapter_model.safetensors'), path.join(xss, 'adapter_model.safetensors'));
  return dir;
}

/** Text of the first element matching `selector`, once `ok` accepts it. */
async function waitText(page: Page, selector: string, ok: (t: string) => boolean, what: string, timeout = 20_000): Promise<string> {
  const deadline = Date.now() + timeout;
  let last = '';
  while (Date.now() < deadline) {
    last = (await page.locator(selector).first().textContent().catch(() => null)) ?? '';
    if (ok(last)) return last;
    await page.waitForTimeout(50);
  }
  throw new Error(`${what}: ${selector} still reads ${JSON.stringify(last.slice(0, 300))}`);
}

async function waitFor<T>(f: () => Promise<T | null | undefined | false>, what: string, timeout = 20_000): Promise<T> {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('web console in Chromium', { skip: chromiumSkip }, () => {
  let s: RunningServer;
  let browser: Browser;
  let page: Page;
  let watch: PageWatch;
  const dirs: string[] = [];

  before(async () => {
    browser = await launchChromium();
    const enc = await makeEncoderStore();
    const dec = await mkdtemp(path.join(os.tmpdir(), 'adapterhost-console-llm-'));
    dirs.push(enc, dec);
    await cp(path.join(ROOT, 'adapters-llm'), dec, { recursive: true });
    s = await startServer(loadConfig([], {}, {
      modelDir: `${path.join(ROOT, 'models/demo')},${path.join(ROOT, 'models/demo-llm')}`,
      adaptersDir: `${enc},${dec}`,
      port: 0, host: '127.0.0.1', logLevel: 'silent', threads: 1, adminToken: TOKEN,
    }));
    await s.ready;
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    watch = new PageWatch(page);
    await watch.init();
    await mkdir(SCREENSHOTS, { recursive: true });
  });

  after(async () => {
    await browser?.close();
    await s?.close();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  test('served by the server itself: CSP without inline script or style, cache headers, hashed assets', async () => {
    const res = await fetch(`${s.url}/`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
    const csp = res.headers.get('content-security-policy') ?? '';
    assert.equal(csp, CONSOLE_CSP);
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.match(csp, /style-src 'self'(;|$)/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|https?:/);
    assert.equal(res.headers.get('cache-control'), 'no-cache');
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    const html = await res.text();
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script element');
    assert.doesNotMatch(html, /<style|style=/, 'no inline style');
    const assets = [...html.matchAll(/(?:src|href)="(\/console\/[^"]+)"/g)].map((m) => m[1]!);
    assert.equal(assets.length, 3, `script, stylesheet, icon: ${assets.join(', ')}`);
    for (const a of assets) {
      const r = await fetch(`${s.url}${a}`);
      assert.equal(r.status, 200, a);
      assert.equal(r.headers.get('cache-control'), 'public, max-age=31536000, immutable', a);
      assert.match(a, /-[A-Za-z0-9]{8}\.(js|css|svg)$/, `${a} has a content hash in its name`);
    }
    // node:http, not fetch: fetch adds Cache-Control: no-cache to a request that carries If-None-Match.
    const again = await rawRequest(`${s.url}/`, { method: 'GET', headers: { 'if-none-match': res.headers.get('etag') ?? '' } });
    assert.equal(again.status, 304, 'the page revalidates with its ETag');
    const missing = await getJson(`${s.url}/console/nothing.js`);
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.code, 'ROUTE_NOT_FOUND');
  });

  test('the page lists both bases with their savings, and the adapters with their byte ratios', async () => {
    await page.goto(`${s.url}/`);
    await page.locator('article.base[data-base="adapterhost-demo-bert"] table.adapters tbody tr').first().waitFor();
    const { body } = await getJson(`${s.url}/v1/adapters`);
    const byId = new Map<string, { relative_to_base: number; base: string }>(body.data.map((a: { id: string }) => [a.id, a]));
    for (const id of ['spam', 'lang', 'topic', 'es-topic', 'sentiment', 'summarize', 'translate-it', 'riassumi']) {
      const row = page.locator(`tr[data-adapter="${id}"]`);
      assert.equal(await row.count(), 1, `row ${id}`);
      const cells = await row.locator('td').allTextContents();
      const rel = byId.get(id)!.relative_to_base;
      assert.ok(cells.some((c) => c.includes(`(${Math.round(1 / rel)}× smaller)`)), `${id}: ratio ${rel} in ${cells.join(' | ')}`);
    }
    const bert = page.locator('article.base[data-base="adapterhost-demo-bert"]');
    const n = BULK + 6;
    assert.match(await bert.locator('.savings figcaption').textContent() ?? '', new RegExp(`^${n.toLocaleString('en-US')} adapters: .* instead of .* for ${n.toLocaleString('en-US')} merged copies, \\d+× less storage`));
    const llama = page.locator('article.base[data-base="adapterhost-demo-llama"]');
    assert.match(await llama.locator('.savings figcaption').textContent() ?? '', /^3 adapters: .* less storage/);
    assert.equal(await llama.locator('tbody tr').count(), 3);
    await page.screenshot({ path: path.join(SCREENSHOTS, 'console-1280.png') });
  });

  test(`${BULK.toLocaleString('en-US')} adapters: a page of rows at a time, filter by id, sort, last page`, async () => {
    const bert = page.locator('article.base[data-base="adapterhost-demo-bert"]');
    assert.equal(await bert.locator('tbody tr').count(), 50);
    assert.match(await bert.locator('.table-info').textContent() ?? '', /1,006 adapters; showing 1–50/);
    await bert.getByRole('button', { name: 'Last' }).click();
    assert.match(await bert.locator('.pager').textContent() ?? '', /Page 21 of 21/);
    assert.equal(await bert.locator('tbody tr').count(), 6);
    await page.fill('#filter', 'bulk-0999');
    await waitText(page, 'article.base[data-base="adapterhost-demo-bert"] .table-info', (t) => t.startsWith('1 of 1,006'), 'filtered');
    assert.deepEqual(await bert.locator('tbody th').allTextContents(), ['zz-bulk-0999']);
    await page.fill('#filter', '');
    // Sorting by bytes, largest first: keyboard only (focus the header button, Enter twice).
    await bert.getByRole('button', { name: /Bytes on disk/ }).focus();
    await page.keyboard.press('Enter');
    await page.keyboard.press('Enter');
    assert.equal(await bert.locator('th[aria-sort]').getAttribute('aria-sort'), 'descending');
    assert.equal(await bert.locator('tbody th').first().textContent(), 'topic', 'the largest demo adapter first');
    // Every adapter is in the try-it list.
    assert.equal(await page.locator('#try-model option').count(), BULK + 6 + 3 + 2);
  });

  test('an adapter whose labels are HTML shows them as text and runs nothing', async () => {
    watch.step = 'xss';
    await page.fill('#filter', XSS_ID);
    const labels = page.locator(`tr[data-adapter="${XSS_ID}"] td.labels`);
    await labels.waitFor();
    assert.equal(await labels.textContent(), XSS_LABELS.join(', '));
    await page.selectOption('#try-model', XSS_ID);
    await page.click('#try-run');
    await waitText(page, '#try-output', (t) => t.includes('%'), 'xss classified');
    const shown = await page.locator('.scores .score-label').allTextContents();
    assert.deepEqual([...shown].sort(), [...XSS_LABELS].sort());
    assert.equal(await page.locator('main img, main b').count(), 0, 'no element was made from a label');
    assert.deepEqual(watch.dialogs, [], 'no alert() ran');
    await page.fill('#filter', '');
  });

  test('classify: the spam adapter\'s labels as score bars, top label as the API answers, counted per adapter', async () => {
    watch.step = 'classify';
    const text = 'WINNER!! You have been selected to receive a $1000 prize. Call now to claim your reward.';
    const api = await postJson(`${s.url}/v1/predict`, { adapter_id: 'spam', inputs: text });
    const top = api.body.predictions[0][0].label as string;
    assert.equal(top, 'spam');
    await page.selectOption('#try-model', 'spam');
    await page.fill('#try-text', text);
    // Keyboard: from the text box, Tab reaches the button, Enter presses it.
    await page.focus('#try-text');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate('document.activeElement?.id'), 'try-run');
    await page.keyboard.press('Enter');
    await waitText(page, '.scores li.top .score-label', (t) => t !== '', 'top label');
    assert.equal(await page.locator('.scores li.top .score-label').textContent(), top);
    assert.equal(await page.locator('.scores li').count(), 2);
    // The Requests column follows adapterhost_adapter_requests_total (two predict requests for spam so far).
    await page.fill('#filter', 'spam');
    await waitText(page, 'tr[data-adapter="spam"] td:nth-of-type(8)', (t) => t === '2', 'spam served twice');
    await page.fill('#filter', '');
  });

  test('generation streams token by token from a generative adapter (summarize)', async (t) => {
    watch.step = 'generate';
    const prompt = 'The GNU Image Manipulation Program is a versatile graphics manipulation package. It supports many file formats and has a plug-in interface.';
    const api = await postJson(`${s.url}/v1/chat/completions`, { model: 'summarize', messages: [{ role: 'user', content: prompt }], temperature: 0, max_tokens: 24 });
    const expected = api.body.choices[0].message.content as string;
    await page.selectOption('#try-model', 'summarize');
    await page.fill('#try-text', prompt);
    await page.fill('#try-max-tokens', '24');
    await page.fill('#try-temperature', '0');
    // Every text the output shows while it streams, seen by a MutationObserver in the page.
    // (Page-side code is a string: the tests compile without the DOM's types.)
    await page.evaluate(`(() => {
      const seen = [];
      window.__seen = seen;
      new MutationObserver(() => {
        const t = document.getElementById('try-text-out')?.textContent ?? '';
        if (t !== seen[seen.length - 1]) seen.push(t);
      }).observe(document.getElementById('try'), { subtree: true, childList: true, characterData: true });
    })()`);
    await page.click('#try-run');
    await page.locator('#try-status[data-state="done"]').waitFor({ timeout: 30_000 });
    const seen = (await page.evaluate('window.__seen') as string[]).filter((t) => t !== '');
    t.diagnostic(`the output showed ${seen.length} successive texts`);
    assert.ok(seen.length >= 3, `the text grew at least twice before the end: ${JSON.stringify(seen)}`);
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i]!.startsWith(seen[i - 1]!) && seen[i]!.length > seen[i - 1]!.length, 'each step extends the text');
    assert.equal(await page.locator('#try-text-out').textContent(), expected, 'the streamed text is the API\'s answer');
    assert.match(await page.locator('#try-status').textContent() ?? '', /^finished: (stop|length), \d+ tokens/);
  });

  test('stop cancels the sequence on the server: running sequences and KV cache back to 0', async () => {
    watch.step = 'stop';
    // The aborted fetch is the point of this step.
    watch.expect('stop', 'requestfailed', /POST .*\/v1\/completions net::ERR_ABORTED/);
    const prompt = 'Tell me a long story';
    // A seed whose sample runs to max_tokens, so the stop lands while the sequence still runs (the
    // base ends most documents within 256 positions, so a hot temperature: at 1.6, 5 of seeds 1–12 run to 220).
    let seed = 0;
    for (let k = 1; k <= 12 && seed === 0; k++) {
      const r = await postJson(`${s.url}/v1/completions`, { model: 'adapterhost-demo-llama', prompt, temperature: 1.6, seed: k, max_tokens: 220 });
      if (r.body.choices[0].finish_reason === 'length') seed = k;
    }
    assert.ok(seed > 0, 'some seed runs to max_tokens');
    await page.selectOption('#try-model', 'adapterhost-demo-llama');
    await page.selectOption('#try-mode', 'completion');
    await page.fill('#try-text', prompt);
    await page.fill('#try-max-tokens', '220');
    await page.fill('#try-temperature', '1.6');
    await page.fill('#try-seed', String(seed));
    let stopped = false;
    for (let attempt = 0; attempt < 3 && !stopped; attempt++) {
      const before = await scrape(s.url);
      const cancelled0 = metricValue(before, 'adapterhost_generation_requests_total', { reason: 'cancelled' }, { absentIsZero: true });
      await page.click('#try-run');
      await waitText(page, '#try-text-out', (t) => t.length > 0, 'first tokens');
      const runningBefore = metricValue(await scrape(s.url), 'adapterhost_num_requests_running');
      await page.click('#try-stop');
      const state = await waitFor(async () => {
        const st = await page.locator('#try-status').getAttribute('data-state');
        return st === 'stopped' || st === 'done' ? st : null;
      }, 'the generation ended');
      if (state === 'done') continue; // it reached max_tokens before the click landed (a very fast machine): again
      assert.equal(runningBefore, 1, 'the sequence ran on the server before the stop');
      const after = await waitFor(async () => {
        const m = await scrape(s.url);
        return metricValue(m, 'adapterhost_num_requests_running') === 0 && metricValue(m, 'adapterhost_kv_cache_reserved_bytes') === 0 ? m : null;
      }, 'running sequences and reserved KV cache back to 0');
      assert.equal(metricValue(after, 'adapterhost_generation_requests_total', { reason: 'cancelled' }) - cancelled0, 1, 'the server cancelled the sequence');
      assert.equal(metricValue(after, 'adapterhost_kv_cache_bytes'), 0);
      assert.match(await page.locator('#try-status').textContent() ?? '', /stopped/);
      stopped = true;
    }
    assert.ok(stopped, 'the stop button landed while the sequence ran');
  });

  test('upload through the page (files picked, then dropped): a wrong token shows the server\'s 401 message; the right one adds a row; delete removes it', async () => {
    const id = 'uploaded-by-page';
    const files = ['adapter_config.json', 'adapter_model.safetensors'].map((f) => path.join(ROOT, 'adapters/sentiment', f));
    watch.step = 'wrong-token';
    watch.expect('wrong-token', 'http', /^401 PUT .*\/v1\/adapters\/uploaded-by-page$/);
    watch.expect('wrong-token', 'console.error', /status of 401/);
    await page.fill('#admin-token', 'not-the-token');
    await page.fill('#upload-id', id);
    await page.setInputFiles('#upload-config', files[0]!);
    await page.setInputFiles('#upload-model', files[1]!);
    await page.click('#upload-submit');
    const refused = await waitText(page, '#upload-result', (t) => t.startsWith('Refused'), 'refused upload');
    const direct = await fetch(`${s.url}/v1/adapters/${id}`, { method: 'DELETE', headers: { authorization: 'Bearer not-the-token' } });
    const message = ((await direct.json()) as { error: { message: string } }).error.message;
    assert.equal(refused, `Refused: 401 UNAUTHORIZED: ${message}`);
    assert.equal((await getJson(`${s.url}/v1/adapters/${id}`)).status, 404);

    watch.step = 'upload';
    await page.fill('#admin-token', TOKEN);
    // This time the files are dropped on the form (the lang adapter's, replacing the picked ones).
    const dropped = await Promise.all(['adapter_config.json', 'adapter_model.safetensors'].map(async (f) => ({ name: f, b64: (await readFile(path.join(ROOT, 'adapters/lang', f))).toString('base64') })));
    await page.evaluate(`(() => {
      const dt = new DataTransfer();
      for (const f of ${JSON.stringify(dropped)}) dt.items.add(new File([Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0))], f.name));
      document.querySelector('fieldset.drop').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    })()`);
    const langBytes = Buffer.from(dropped[1]!.b64, 'base64').length;
    await waitText(page, 'fieldset.drop', (t) => t.includes(`adapter_model.safetensors, ${formatBytes(langBytes)}`), 'dropped files listed');
    await page.click('#upload-submit');
    assert.match(await waitText(page, '#upload-result', (t) => t.startsWith('Done'), 'upload'), /^Done: Created adapter uploaded-by-page on adapterhost-demo-bert/);
    assert.equal((await getJson(`${s.url}/v1/adapters/${id}`)).status, 200);
    await page.fill('#filter', id);
    const row = page.locator(`tr[data-adapter="${id}"]`);
    await row.waitFor();
    assert.equal(await row.locator('td.labels').textContent(), 'cs, de, en, eo, es, fr, it, pl, pt', 'the dropped (lang) files were sent');

    watch.step = 'delete';
    await row.getByRole('button', { name: `Delete ${id}` }).click();
    await row.getByRole('button', { name: 'Yes, delete' }).click();
    await waitText(page, '#models-notice', (t) => t.includes('Deleted'), 'deleted');
    await row.waitFor({ state: 'detached' });
    assert.equal((await getJson(`${s.url}/v1/adapters/${id}`)).status, 404);
    await page.fill('#filter', '');
  });

  test('live metrics: charts drawn from /metrics, latest values as text', async () => {
    watch.step = 'metrics';
    assert.equal(await page.locator('#metrics .chart canvas').count(), 4);
    // Classify once more so the next point has inference traffic.
    await page.selectOption('#try-model', 'lang');
    await page.fill('#try-text', 'Bonjour, comment allez-vous ?');
    await page.click('#try-run');
    await page.locator('.scores li.top').waitFor();
    const text = await waitText(page, '#metrics-now', (t) => /Inference requests\/s(0\.[1-9]|[1-9])/.test(t), 'a non-zero request rate', 15_000);
    assert.match(text, /Latency p50[\d.,]+ ms/);
    assert.match(text, /KV cache use[\d.]+ %/);
  });

  test('phone width: nothing wider than the screen, the tables scroll inside their box', async () => {
    watch.step = 'phone';
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(300);
    const width = await page.evaluate('document.documentElement.scrollWidth') as number;
    assert.ok(width <= 390, `page width ${width}`);
    await page.screenshot({ path: path.join(SCREENSHOTS, 'console-phone.png') });
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  test('no console errors, failed requests, page errors or CSP violations along the way', async () => {
    assert.deepEqual(await watch.cspViolations(), []);
    assert.deepEqual(watch.problems, []);
    assert.deepEqual(watch.dialogs, []);
  });
});

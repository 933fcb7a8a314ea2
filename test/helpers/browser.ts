/**
 * A real headless Chromium for the console tests: Debian's `chromium` package driven by
 * playwright-core. Under CI=true a missing browser is a failure (`.ci/run` installs it); elsewhere
 * the browser tests skip, saying why, so `npm test` runs on a machine with Node alone.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';

/** Where Debian's package puts the browser (CHROMIUM_PATH overrides it). */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Why the browser tests cannot run here (false when they can, and always false under CI=true: there they must). */
export const chromiumSkip: string | false = existsSync(CHROMIUM_PATH) || process.env.CI === 'true'
  ? false
  : `no Chromium at ${CHROMIUM_PATH} (apt-get install -y chromium, or set CHROMIUM_PATH; CI installs it and fails without it)`;

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`Chromium is not installed at ${CHROMIUM_PATH}: the console tests need a real browser (apt-get install -y chromium; .ci/run installs it; CHROMIUM_PATH points elsewhere)`);
  }
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: ['--disable-gpu', '--no-first-run'] });
}

/** Something the page reported that a test did not expect, and the step it happened in. */
export interface PageProblem { step: string; kind: string; text: string }

/**
 * Records every console error, uncaught page error, failed or 4xx/5xx request, dialog (an
 * `alert()` is script the page ran) and CSP violation (seen by a listener installed before
 * any page script). `expect(step, kind, pattern)` allows one kind of problem in a step.
 */
export class PageWatch {
  readonly problems: PageProblem[] = [];
  readonly dialogs: string[] = [];
  step = 'load';
  private readonly allowed: Array<{ step: string; kind: string; pattern: RegExp }> = [];

  constructor(readonly page: Page) {
    page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') this.add(`console.${m.type()}`, m.text()); });
    page.on('pageerror', (e) => this.add('pageerror', String(e)));
    page.on('requestfailed', (r) => this.add('requestfailed', `${r.method()} ${r.url()} ${r.failure()?.errorText ?? ''}`));
    page.on('response', (r) => { if (r.status() >= 400) this.add('http', `${r.status()} ${r.request().method()} ${r.url()}`); });
    page.on('dialog', (d) => { this.dialogs.push(d.message()); void d.dismiss(); });
  }

  /** Installs the CSP violation listener; call before the first navigation. */
  async init(): Promise<void> {
    // A string: the tests compile without the DOM's types.
    await this.page.addInitScript({ content: `window.__csp = [];
      document.addEventListener('securitypolicyviolation', (e) => { window.__csp.push(e.violatedDirective + ' ' + e.blockedURI + ' ' + e.sourceFile + ':' + e.lineNumber); });` });
  }

  expect(step: string, kind: string, pattern: RegExp): void {
    this.allowed.push({ step, kind, pattern });
  }

  private add(kind: string, text: string): void {
    const ok = this.allowed.some((a) => a.step === this.step && a.kind === kind && a.pattern.test(text));
    if (!ok) this.problems.push({ step: this.step, kind, text });
  }

  async cspViolations(): Promise<string[]> {
    return (await this.page.evaluate('window.__csp ?? []')) as string[];
  }
}

import { existsSync, mkdirSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { cleanup } from '../../harness/procs.js';

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
const ARTIFACTS = fileURLToPath(new URL('../../../test-artifacts/', import.meta.url));

/** The skip reason for tests that need a real browser, or false when Chromium is installed. */
export const NO_CHROMIUM = !CHROMIUM && 'Chromium is not installed (apt-get install chromium)';

/**
 * A page in headless Chromium, closed with the test, with its console errors collected: the CSP forbids
 * inline script and style, and a violation shows up as a console error.
 */
export async function browserPage(
  t: TestContext,
  viewport: { width: number; height: number },
  timeoutMs: number,
  /** More command-line switches, e.g. a certificate to trust. */
  extraArgs: string[] = [],
): Promise<{ page: Page; consoleErrors: string[] }> {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      ...extraArgs,
    ],
  });
  cleanup(t, () => browser.close());
  const page = await browser.newPage({ viewport });
  page.setDefaultTimeout(timeoutMs);
  const consoleErrors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  return { page, consoleErrors };
}

/** A full-page screenshot into test-artifacts/, named in the test's output. */
export async function screenshot(t: TestContext, page: Page, name: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: `${ARTIFACTS}${name}`, fullPage: true });
  t.diagnostic(`screenshot: ${ARTIFACTS}${name}`);
}

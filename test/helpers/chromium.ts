/**
 * Headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core) for the page tests: a fresh
 * user-data dir, one tab whose uncaught page errors (and, if asked, console errors) are collected, and
 * everything closed and removed afterwards.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

export async function withChromiumTab(run: (tab: Page, errors: string[]) => Promise<void>, opts: { consoleErrors?: boolean } = {}): Promise<void> {
  const userDir = mkdtempSync(path.join(os.tmpdir(), 'camstream-chromium-'));
  let browser: BrowserContext | undefined;
  try {
    // a fresh --user-data-dir (playwright wants it as the persistent-context argument)
    browser = await chromium.launchPersistentContext(userDir, {
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const tab = await browser.newPage();
    const errors: string[] = [];
    tab.on('pageerror', (e) => errors.push(String(e)));
    if (opts.consoleErrors) {
      tab.on('console', (m) => {
        if (m.type() === 'error') errors.push(m.text());
      });
    }
    await run(tab, errors);
  } finally {
    await browser?.close();
    rmSync(userDir, { recursive: true, force: true });
  }
}

// The web console in a real browser (Debian's Chromium, driven by playwright-core), run by
// tests/ui.rs against two real sites. What the page cannot do itself (write on the primary
// mount, stop sshd, restart georepd) it asks the Rust side for: it prints `ASK <what>` and
// waits for `DONE` on stdin. `STEP` lines say where it is; the exit status is the verdict.
//
// Environment: URL (georepd's API), TOKEN, DEST_HOST, DEST_USER, DEST_VOL, SMALL_VOL (a started,
// empty volume of the destination too small for PVOL), PVOL, OUT (where screenshots go).
'use strict';
const { chromium } = require('playwright-core');
const readline = require('readline');

const env = (k) => {
  if (!process.env[k]) throw new Error(`${k} is not set`);
  return process.env[k];
};
const URL = env('URL');
const TOKEN = env('TOKEN');
const DEST_HOST = env('DEST_HOST');
const DEST_USER = env('DEST_USER');
const DEST_VOL = env('DEST_VOL');
const SMALL_VOL = env('SMALL_VOL');
const PVOL = env('PVOL');
const OUT = env('OUT');
const SESSION = `${DEST_USER}@${DEST_HOST}::${DEST_VOL}`;

const lines = [];
let waiter = null;
readline.createInterface({ input: process.stdin }).on('line', (l) => {
  if (waiter) {
    const w = waiter;
    waiter = null;
    w(l);
  } else lines.push(l);
});
async function ask(what) {
  console.log(`ASK ${what}`);
  const l = lines.length ? lines.shift() : await new Promise((r) => (waiter = r));
  if (l !== 'DONE') throw new Error(`${what}: ${l}`);
}
const step = (s) => console.log(`STEP ${s}`);
function assert(ok, what) {
  if (!ok) throw new Error(`assertion failed: ${what}`);
}

let shot = 0;
async function screenshot(page, name) {
  shot += 1;
  await page.screenshot({ path: `${OUT}/${String(shot).padStart(2, '0')}-${name}.png`, fullPage: true });
}

/** Waits until `f()` (run in the test) is truthy; polls. */
async function until(what, f, ms = 30000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      last = await f();
      if (last) return last;
    } catch (e) {
      last = e.message;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${what}: not within ${ms} ms (last: ${last})`);
}

async function main() {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const errors = [];
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(30000);
  page.on('pageerror', (e) => errors.push(`${page.url()}: ${e.message}`));
  page.on('console', (m) => {
    // A refused or failed request is logged by the browser itself ("Failed to load
    // resource"); only the page's own errors count.
    if (m.type() === 'error' && !/Failed to load resource|net::ERR_/.test(m.text())) errors.push(`${page.url()}: ${m.text()}`);
  });
  try {
    await run(page, context);
  } finally {
    await browser.close();
  }
  assert(errors.length === 0, `no page logs a JavaScript error: ${errors.join('; ')}`);
  console.log('PASS');
  process.exit(0); // stdin's reader would keep node alive
}

async function run(page, context) {
  const dialog = page.locator('#dialog');
  const sessionRow = page.locator(`tr[data-session="${SESSION}"]`);
  const fact = (k) => page.locator(`[data-fact="${k}"]`).innerText();
  const status = () => page.locator('.facts .badge').first().innerText();

  step('without a token: only the login page');
  await page.goto(`${URL}/`);
  await page.getByLabel('API token').waitFor();
  assert(await page.locator('#nav').isHidden(), 'no navigation before login');
  const direct = await page.request.get(`${URL}/api/v1/volumes`);
  assert(direct.status() === 401, `the API without the token: ${direct.status()}`);
  await page.goto(`${URL}/#/destinations`);
  await page.getByLabel('API token').waitFor();
  assert((await page.locator('table').count()) === 0, 'no data without the token');
  await screenshot(page, 'login');

  step('a wrong token is refused');
  await page.getByLabel('API token').fill('not-the-token');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByText('The token was refused').waitFor();

  step('log in');
  await page.getByLabel('API token').fill(TOKEN);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.locator('#conn.live').waitFor();
  await page.goto(`${URL}/#/volumes`);
  await page.getByRole('link', { name: PVOL }).waitFor();
  await screenshot(page, 'volumes');

  step('a destination: add, test');
  await page.getByRole('link', { name: 'Destinations' }).click();
  await page.getByRole('button', { name: 'New' }).click();
  await dialog.getByLabel('Host', { exact: true }).fill(DEST_HOST);
  await dialog.getByLabel('User', { exact: true }).fill(DEST_USER);
  await dialog.getByLabel(/Copy this cluster's public keys/).check();
  await dialog.getByRole('button', { name: 'Add' }).click();
  await dialog.waitFor({ state: 'hidden' });
  const destRow = page.locator(`tr[data-host="${DEST_HOST}"]`);
  await destRow.waitFor();
  assert(/SHA256:/.test(await destRow.innerText()), 'the pinned fingerprint is shown');
  await destRow.click();
  await page.getByRole('button', { name: 'Test' }).click();
  await dialog.getByText('Test of').waitFor();
  assert((await dialog.locator('li.ok').count()) === 5, `five stages passed: ${await dialog.innerText()}`);
  await screenshot(page, 'destination-test');
  await dialog.getByRole('button', { name: 'Close' }).click();
  await until('Connected', async () => /Connected/.test(await destRow.innerText()));
  await screenshot(page, 'destinations');

  step('a new session from the dialog');
  await page.goto(`${URL}/#/volumes/${PVOL}`);
  await page.getByRole('tab', { name: 'Geo-Replication Sessions' }).waitFor();
  await page.getByRole('button', { name: 'New' }).click();
  await dialog.getByLabel('Destination host', { exact: true }).selectOption(DEST_HOST);
  const volumes = dialog.getByLabel('Destination volume', { exact: true });
  await until('the eligible volumes', async () => (await volumes.innerText()).includes(DEST_VOL));
  await dialog.locator('[data-fact="needs"]').getByText('Big enough').waitFor();
  assert(!(await volumes.innerText()).includes(SMALL_VOL), `${SMALL_VOL}, too small, is not offered: ${await volumes.innerText()}`);
  await dialog.getByLabel(/Show only eligible volumes/).uncheck();
  await until('every volume, the small one said too small', async () => new RegExp(`${SMALL_VOL} \\(.*too small`).test(await volumes.innerText()));
  await dialog.getByLabel(/Show only eligible volumes/).check();
  await until('the small one hidden again', async () => !(await volumes.innerText()).includes(SMALL_VOL));
  await volumes.selectOption(DEST_VOL);
  await screenshot(page, 'new-session');
  await dialog.getByRole('button', { name: 'Create' }).click();
  await dialog.waitFor({ state: 'hidden' });
  await sessionRow.waitFor();
  await until('the session Active', async () => /ACTIVE/.test(await sessionRow.innerText()), 60000);
  await screenshot(page, 'sessions');

  step('keyboard: select a row, open its details');
  await sessionRow.focus();
  await page.keyboard.press('Space');
  assert((await sessionRow.getAttribute('aria-selected')) === 'true', 'Space selects the row');
  assert(await page.getByRole('button', { name: 'Stop' }).isEnabled(), 'Stop is enabled for an Active session');
  assert(await page.getByRole('button', { name: 'Start' }).isDisabled(), 'Start is disabled for an Active session');
  assert(await page.getByRole('button', { name: 'Remove' }).isDisabled(), 'Remove is disabled for an Active session');
  await page.keyboard.press('Enter');
  await page.locator('[data-fact="lag"]').waitFor();

  step('files written on the primary: the counts and the graphs move');
  const before = Number((await fact('files')).replace(/,/g, ''));
  await ask('write-files');
  await until('files synced grows', async () => Number((await fact('files')).replace(/,/g, '')) > before, 60000);
  await until('the lag graph has a line', async () => (await page.locator('figure[data-chart="Lag"] path.line').count()) === 1, 20000);
  const points = async () => ((await page.locator('figure[data-chart="Files synced"] path.line').getAttribute('d')) || '').split('L').length;
  const p0 = await points();
  await until('the graph moves', async () => (await points()) > p0, 20000);
  await screenshot(page, 'details');

  step('pause and resume');
  await page.getByRole('button', { name: 'Pause' }).click();
  await until('Paused', async () => (await status()) === 'PAUSED', 20000);
  assert(await page.getByRole('button', { name: 'Resume' }).isEnabled(), 'Resume is enabled when paused');
  await page.getByRole('button', { name: 'Resume' }).click();
  await until('Active again', async () => (await status()) === 'ACTIVE', 60000);

  step('an option: refused inline, set, reset');
  await page.getByRole('button', { name: 'Options' }).click();
  const opt = dialog.locator('tr[data-option="sync-jobs"]');
  await opt.waitFor();
  await opt.getByLabel('sync-jobs value').fill('x');
  await opt.getByRole('button', { name: 'Set sync-jobs', exact: true }).click();
  await until('the refusal inline', async () => /sync-jobs/.test(await opt.locator('.error').innerText()));
  await screenshot(page, 'options-refused');
  await opt.getByLabel('sync-jobs value').fill('2');
  await opt.getByRole('button', { name: 'Set sync-jobs', exact: true }).click();
  await until('set to 2', async () => (await opt.getByLabel('sync-jobs value').inputValue()) === '2' && (await opt.getByRole('button', { name: 'Reset sync-jobs', exact: true }).isEnabled()));
  await opt.getByRole('button', { name: 'Reset sync-jobs', exact: true }).click();
  await until('reset to the default', async () => (await opt.getByLabel('sync-jobs value').inputValue()) === '3');
  await dialog.getByRole('button', { name: 'Close' }).click();

  step('a checkpoint completes');
  await page.getByRole('button', { name: 'Checkpoint' }).click();
  await ask('write-files');
  await until('checkpoint completed', async () => (await page.locator('td[data-checkpoint]').first().innerText()) === 'Yes', 60000);

  step('the secondary\'s sshd stops: Faulty, with the reason in words; then it recovers');
  await ask('sshd-stop');
  await ask('write-files');
  const reason = page.locator('.reason');
  await reason.waitFor({ timeout: 90000 });
  const why = await reason.innerText();
  assert(/secondary|connect|ssh/i.test(why) && !/unexpected/.test(why), `the reason in words: ${why}`);
  await screenshot(page, 'faulty');
  await ask('sshd-start');
  await until('Active again', async () => (await status()) === 'ACTIVE' && (await reason.count()) === 0, 120000);

  step('a failure listed, retried once the cause is gone');
  await ask('make-failure');
  const failure = page.locator('tr[data-gfid]');
  await failure.waitFor({ timeout: 60000 });
  assert(/not permitted/.test(await failure.innerText()), `the error in words: ${await failure.innerText()}`);
  await screenshot(page, 'failures');
  await ask('clear-failure');
  await failure.getByRole('button', { name: 'Retry' }).click();
  await until('the failure gone', async () => (await page.locator('tr[data-gfid]').count()) === 0, 60000);

  step('georepd goes away: the page says so, and recovers');
  await ask('georepd-restart');
  await page.locator('#conn.lost').waitFor({ timeout: 30000 });
  await screenshot(page, 'connection-lost');
  await ask('georepd-started');
  await page.locator('#conn.live').waitFor({ timeout: 60000 });
  await until('Active after the restart', async () => (await status()) === 'ACTIVE', 90000);

  step('a phone\'s width: readable, nothing wider than the screen');
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${URL}/#/volumes/${PVOL}`);
  await sessionRow.waitFor();
  assert(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1), 'no page-wide horizontal scroll');
  await screenshot(page, 'phone');
  await page.setViewportSize({ width: 1280, height: 800 });

  step('eight tabs of one browser: all live (one reads the event stream for all)');
  const tabs = [];
  for (let i = 0; i < 8; i++) {
    const t = await context.newPage();
    await t.goto(`${URL}/#/volumes/${PVOL}`);
    await t.evaluate((token) => sessionStorage.setItem('georep.token', token), TOKEN);
    await t.reload();
    await t.locator(`tr[data-session="${SESSION}"]`).waitFor({ timeout: 20000 });
    tabs.push(t);
  }
  await until('every tab Live', async () => {
    for (const t of tabs) if ((await t.locator('#conn.live').count()) === 0) return false;
    return true;
  }, 20000);
  for (const t of tabs) await t.close();

  step('stop (confirmed), start, stop, then remove the session');
  await sessionRow.click();
  const stop = async () => {
    await page.getByRole('button', { name: 'Stop' }).click();
    await dialog.getByText(`Stop the session ${PVOL}`).waitFor();
    await dialog.getByRole('button', { name: 'Stop' }).click();
    await until('Stopped', async () => /STOPPED/.test(await sessionRow.innerText()), 30000);
  };
  await stop();
  assert(await page.getByRole('button', { name: 'Stop' }).isDisabled(), 'Stop is disabled for a stopped session');
  await page.getByRole('button', { name: 'Start' }).click();
  await until('Active after Start', async () => /ACTIVE/.test(await sessionRow.innerText()), 60000);
  await page.getByRole('button', { name: 'Stop' }).click();
  await dialog.getByText(`Stop the session ${PVOL}`).waitFor();
  await screenshot(page, 'stop-confirm');
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await stop();
  await page.getByRole('button', { name: 'Remove' }).click();
  await dialog.getByRole('button', { name: 'Remove' }).click();
  await until('the session gone', async () => (await sessionRow.count()) === 0, 30000);

  step('the destination\'s host key changes: re-establish shows both, accepts only when told');
  await page.getByRole('link', { name: 'Destinations' }).click();
  await destRow.waitFor();
  const pinned = /SHA256:\S+/.exec(await destRow.innerText())[0];
  await ask('host-key-change');
  await destRow.click();
  await page.getByRole('button', { name: 'Test' }).click();
  await dialog.locator('li.failed[data-stage="host key"]').waitFor();
  await screenshot(page, 'host-key-changed');
  await dialog.getByRole('button', { name: 'Close' }).click();
  await page.getByRole('button', { name: 'Re-establish' }).click();
  await dialog.getByText('changed').first().waitFor();
  const old = await dialog.locator('[data-fingerprint="old"]').innerText();
  const now = await dialog.locator('[data-fingerprint="new"]').innerText();
  assert(old === pinned && /^SHA256:/.test(now) && now !== old, `old ${old} (pinned ${pinned}), new ${now}`);
  await screenshot(page, 're-establish');
  await dialog.getByRole('button', { name: `Accept ${now}` }).click();
  await dialog.waitFor({ state: 'hidden' });
  await until('the new key pinned', async () => (await destRow.innerText()).includes(now));

  step('remove the destination');
  await destRow.click();
  await page.getByRole('button', { name: 'Remove' }).click();
  await dialog.getByRole('button', { name: 'Remove' }).click();
  await until('the destination gone', async () => (await destRow.count()) === 0, 30000);

  step('log out: the login page again');
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByLabel('API token').waitFor();
  void context;
}

main().catch((e) => {
  console.log(`FAIL ${e.stack || e}`);
  process.exit(1);
});

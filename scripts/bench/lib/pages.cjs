// The load of scripts/bench/ui: N pages of the web console open in one headless Chromium
// (Debian's, driven by playwright-core), each in a browser context of its own (as N operators'
// browsers), logged in, on the given views (hash routes, in turn), each updating itself as an
// operator's would. Says READY once every page shows its view;
// when standard input closes, prints one JSON line: for each page the bytes it received and
// sent (Chrome's own network accounting: headers and bodies, the event stream included) and
// the seconds it was measured (unless COUNT=0: then no accounting, and zeros).
//
//     NODE_PATH=/opt/georep-test/node/node_modules node pages.cjs URL TOKEN N ROUTE...
'use strict';
const { chromium } = require('playwright-core');

async function main() {
  const [url, token, n, ...routes] = process.argv.slice(2);
  // COUNT=0: no network accounting (it costs the browser and this script CPU of their own,
  // which is the benchmark's, not the pages').
  const count = process.env.COUNT !== '0';
  // BLANK=1: the same browser and contexts, every page blank (the browser's own cost, the
  // control for the console's).
  const blank = process.env.BLANK === '1';
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const pages = [];
  for (let i = 0; i < Number(n); i++) {
    // A context each, as N operators' browsers: each page reads its own event stream.
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    await context.addInitScript((t) => sessionStorage.setItem('georep.token', t), token);
    const page = await context.newPage();
    const counted = { received: 0, sent: 0 };
    if (count) {
      const cdp = await context.newCDPSession(page);
      await cdp.send('Network.enable');
      cdp.on('Network.dataReceived', (e) => (counted.received += e.encodedDataLength));
      cdp.on('Network.responseReceivedExtraInfo', (e) => (counted.received += (e.headersText || '').length));
      cdp.on('Network.requestWillBeSentExtraInfo', (e) => {
        counted.sent += Object.entries(e.headers || {}).reduce((a, [k, v]) => a + k.length + String(v).length + 4, 0);
      });
    }
    const route = routes[i % routes.length];
    if (blank) {
      await page.goto('about:blank');
    } else {
      await page.goto(`${url}/${route}`);
      await page.locator(route.includes('/sessions/') ? '[data-fact="lag"]' : 'tr[data-session]').first().waitFor({ timeout: 60000 });
    }
    pages.push({ route, counted });
  }
  // Measured from now: what the pages fetched to appear is not update traffic.
  for (const p of pages) p.counted.received = p.counted.sent = 0;
  const t0 = Date.now();
  console.log('READY');
  process.stdin.resume();
  await new Promise((r) => process.stdin.on('end', r));
  const seconds = (Date.now() - t0) / 1000;
  await browser.close();
  console.log(JSON.stringify({ seconds, pages: pages.map((p) => ({ route: p.route, received: p.counted.received, sent: p.counted.sent })) }));
  process.exit(0);
}
main().catch((e) => {
  console.log(`FAIL ${e.stack || e}`);
  process.exit(1);
});

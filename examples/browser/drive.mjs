// Drives index.html in headless Chromium (Debian's /usr/bin/chromium, or
// $CHROMIUM) through four cases and prints each outcome as a JSON line:
//   node drive.mjs WS_URL VALID_TOKEN EXPIRED_TOKEN EMAIL_TOKEN
// (EMAIL_TOKEN: a valid token whose `sub` is an e-mail address)
// The page is served over HTTP from this directory (module scripts do not
// load from file://), MQTT.js from node_modules — never a CDN.
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import puppeteer from "puppeteer-core";

const [broker, validToken, expiredToken, emailToken] = process.argv.slice(2);
if (!broker || !validToken || !expiredToken || !emailToken) {
  console.error("usage: node drive.mjs WS_URL VALID_TOKEN EXPIRED_TOKEN EMAIL_TOKEN");
  process.exit(2);
}
const root = fileURLToPath(new URL(".", import.meta.url));
const types = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript" };
const server = createServer(async (request, response) => {
  const path = normalize(decodeURIComponent(new URL(request.url, "http://x").pathname));
  try {
    const body = await readFile(join(root, path === "/" ? "index.html" : path));
    response.writeHead(200, { "content-type": types[extname(path)] ?? "application/octet-stream" });
    response.end(body);
  } catch {
    response.writeHead(404).end();
  }
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const page_url = `http://127.0.0.1:${server.address().port}/index.html?broker=${encodeURIComponent(broker)}`;

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu"],
});
try {
  const page = await browser.newPage();
  page.on("pageerror", (error) => console.error(`page error: ${error.message}`));
  page.on("console", (message) => console.error(`page: ${message.text()}`));
  await page.goto(page_url, { waitUntil: "load" });
  const cases = [
    { name: "valid token", token: validToken, reply: "" },
    { name: "no token", token: "", reply: "" },
    { name: "expired token", token: expiredToken, reply: "" },
    { name: "someone else's reply topic", token: validToken, reply: "replies/mallory/inbox" },
    { name: "e-mail subject's own reply topic", token: emailToken, reply: "replies/{sub}/app" },
  ];
  for (const [index, run] of cases.entries()) {
    await page.$eval("#token", (element, value) => { element.value = value; }, run.token);
    await page.$eval("#reply", (element, value) => { element.value = value; }, run.reply);
    await page.click("#send");
    await page.waitForFunction(
      (runs) => Number(document.getElementById("outcome").dataset.runs) >= runs,
      { timeout: 20000 },
      index + 1,
    );
    const outcome = await page.evaluate(() => ({
      status: document.getElementById("status").textContent,
      explanation: document.getElementById("explanation").textContent,
      body: document.getElementById("body").textContent,
    }));
    console.log(JSON.stringify({ case: run.name, ...outcome }));
  }
} finally {
  await browser.close();
  server.close();
}

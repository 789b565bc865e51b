// Regenerates docs/screenshots/{desktop,phone}.png: `bun docs/screenshots/take.ts`.
// Starts `bun run cluster --connect 2` on free ports, three users chat in Chromium, then shoots.
import { join } from "node:path";
import { spawnCluster } from "../../test/support/process-cluster.ts";
import { composer, joinRoom, launchChromium, register, sendMessage } from "../../test/support/web.ts";

const OUT = import.meta.dir;
const cluster = await spawnCluster(["--connect", "2"]);
const browser = await launchChromium();
try {
  const base = cluster.ready.api[0]!;
  const suffix = Date.now().toString(36).slice(-3);
  const [maya, leo, ana] = ["maya", "leo", "ana"].map((n) => `${n}_${suffix}`);
  const page = async (w: number, h: number) => (await browser.newContext({ viewport: { width: w, height: h }, deviceScaleFactor: w < 500 ? 2 : 1 })).newPage();
  const pm = await page(1280, 800);
  const pl = await page(1280, 800);
  const pa = await page(390, 844);
  await register(pm, base, maya);
  await register(pl, base, leo);
  await register(pa, base, ana);
  for (const p of [pm, pl, pa]) await joinRoom(p, "design-review");
  await joinRoom(pm, "general");
  await pm.getByRole("button", { name: /^design-review/ }).click();
  const script: [typeof pm, string][] = [
    [pl, "Morning! The new build is up on staging."],
    [pm, "Nice, checking it now ☕"],
    [pa, "Reconnect after a deploy is instant now — no more missing messages."],
    [pl, "Yes: it syncs every open conversation from the last seq it has, page by page."],
    [pm, "And the unread badges clear on my phone when I read on the laptop."],
  ];
  for (const [p, text] of script) {
    await sendMessage(p, text);
    await p.waitForTimeout(150);
  }
  await pl.getByRole("textbox", { name: "Direct message" }).fill(maya);
  await pl.getByRole("button", { name: "Start" }).click();
  await sendMessage(pl, "Lunch at 12:30?");
  await sendMessage(pl, "The usual place");
  await pl.getByRole("button", { name: /^design-review/ }).click();
  await pm.waitForTimeout(1000);
  await composer(pa).fill("Let me try it on");
  await pm.getByText(/is typing…/).waitFor();
  await pm.screenshot({ path: join(OUT, "desktop.png") });
  await composer(pm).fill("Looks great");
  await pa.getByText(/is typing…/).waitFor();
  // The whole page: on a phone the conversation list sits above the open conversation.
  await pa.screenshot({ path: join(OUT, "phone.png"), fullPage: true });
  console.log("wrote", join(OUT, "desktop.png"), join(OUT, "phone.png"));
} finally {
  await browser.close();
  await cluster.stop();
}

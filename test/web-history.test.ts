// The web app's history in Chromium against `bun run cluster --connect 2`: a room with 120
// prior messages opens at the newest and, scrolled up, loads older pages back to the first,
// each message once.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Browser, BrowserContext } from "playwright-core";
import type { ProcessCluster } from "./support/process-cluster.ts";
import { http, registerUser, uniqueName } from "./support/http.ts";
import { bodies, joinRoom, launchChromium, messages, register, webCluster, withShots } from "./support/web.ts";

let cluster: ProcessCluster;
let browser: Browser;
const contexts: BrowserContext[] = [];

beforeAll(async () => {
  [cluster, browser] = await Promise.all([webCluster(), launchChromium()]);
});
afterAll(async () => {
  await browser?.close();
  await cluster?.stop();
});

describe("web app history", () => {
  test("120 prior messages: opens at the newest, scrolls back to the first with no duplicates", async () => {
    const base = cluster.ready.api[0]!;
    const room = uniqueName("hist").toLowerCase();
    const poster = await registerUser(base);
    for (let i = 1; i <= 120; i++) {
      const r = await http(base, "POST", `/api/rooms/${room}/messages`, { token: poster.token, body: { body: `history #${i}` } });
      expect(r.status).toBe(202);
    }
    const ctx = await browser.newContext({ viewport: { width: 1100, height: 700 } });
    contexts.push(ctx);
    const page = await ctx.newPage();
    await withShots("history", () => contexts, async () => {
      await register(page, base, uniqueName("reader").toLowerCase());
      await joinRoom(page, room);
      const log = messages(page);
      const newest = log.getByRole("listitem").filter({ hasText: "history #120" });
      await newest.waitFor();
      // Opens at the newest: the last message is in view, the log is scrolled to its bottom.
      await expect(newest.isVisible()).resolves.toBe(true);
      const atBottom = await log.evaluate((el) => el.scrollHeight - el.scrollTop - el.clientHeight < 5);
      expect(atBottom).toBe(true);
      const first = await bodies(page);
      expect(first.length).toBeLessThan(120); // one page, not everything
      expect(first.at(-1)).toBe("history #120");

      // Scroll to the top until the first message is there.
      const deadline = Date.now() + 60_000;
      while (!(await bodies(page)).includes("history #1")) {
        if (Date.now() > deadline) throw new Error(`never reached #1; have ${(await bodies(page)).length}`);
        await log.evaluate((el) => {
          el.scrollTop = 0;
        });
        await page.waitForTimeout(250);
      }
      const all = await bodies(page);
      expect(all).toEqual(Array.from({ length: 120 }, (_, i) => `history #${i + 1}`));
      await page.getByText("This is the start of the conversation.").waitFor();
      // Loading older pages kept the reader's place: the viewport is not at the bottom.
      expect(await log.evaluate((el) => el.scrollTop < el.scrollHeight - el.clientHeight)).toBe(true);
    });
  });
});

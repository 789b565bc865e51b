// The web app when things break, in Chromium against `bun run cluster --connect 2`: a message
// sent offline shows Sending… then Failed, is retried (same clientMsgId) and reaches the other
// user once; a connect instance SIGKILLed mid-conversation leaves both pages with every message once.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Browser, BrowserContext, Page } from "playwright-core";
import type { ProcessCluster } from "./support/process-cluster.ts";
import { eventually, http, registerUser, uniqueName } from "./support/http.ts";
import { composer, connected, expectEachOnce, joinRoom, launchChromium, messages, register, sendMessage, webCluster, withShots } from "./support/web.ts";

// Page-side code in evaluate() runs in the browser; this program has no DOM types.
declare const document: any, window: any, MutationObserver: any, Event: any;

let cluster: ProcessCluster;
let browser: Browser;
let base: string;
const contexts: BrowserContext[] = [];

beforeAll(async () => {
  [cluster, browser] = await Promise.all([webCluster(), launchChromium()]);
  base = cluster.ready.api[0]!;
});
afterAll(async () => {
  await browser?.close();
  await cluster?.stop();
});

/** The URL of the WebSocket each page opened last: which connect instance it is on. */
const socketUrl = new WeakMap<Page, string>();

async function twoUsersIn(room: string): Promise<[Page, Page]> {
  const pages: Page[] = [];
  for (const who of ["ann", "ben"]) {
    const ctx = await browser.newContext({ viewport: { width: 1100, height: 750 } });
    contexts.push(ctx);
    const page = await ctx.newPage();
    page.on("websocket", (ws) => socketUrl.set(page, ws.url()));
    await register(page, base, uniqueName(who).toLowerCase());
    await joinRoom(page, room);
    pages.push(page);
  }
  return pages as [Page, Page];
}

/** Records every text the page's status element shows, from now on. */
async function recordStatus(page: Page): Promise<() => Promise<string[]>> {
  await page.evaluate(() => {
    const w = window as unknown as { statusLog: string[] };
    w.statusLog = [];
    const el = document.querySelector('[role="status"]')!;
    new MutationObserver(() => w.statusLog.push(el.textContent ?? "")).observe(el, { childList: true, characterData: true, subtree: true });
  });
  return () => page.evaluate(() => (window as unknown as { statusLog: string[] }).statusLog);
}

describe("web app resilience", () => {
  test("a message sent offline shows Sending… then Failed; Retry sends it once", async () => {
    const room = uniqueName("off").toLowerCase();
    await withShots("offline", () => contexts, async () => {
      const [ann, ben] = await twoUsersIn(room);
      await sendMessage(ann, "before going offline");
      await expectEachOnce(ben, ["before going offline"]);

      await ann.context().setOffline(true);
      await ann.getByRole("status").filter({ hasText: /^Offline$/ }).waitFor();
      await sendMessage(ann, "written offline");
      const item = messages(ann).getByRole("listitem").filter({ hasText: "written offline" });
      await item.getByText("Sending…").waitFor();
      await item.getByText("Failed").waitFor({ timeout: 30_000 });
      await ann.context().setOffline(false);
      await connected(ann);
      await item.getByRole("button", { name: "Retry" }).click();
      await expectEachOnce(ann, ["before going offline", "written offline"]);
      await expectEachOnce(ben, ["before going offline", "written offline"]);
      // Stored once, under the clientMsgId the first attempt had.
      const reader = await registerUser(base);
      const hist = await http(base, "GET", `/api/conversations/room:${room}/messages`, { token: reader.token });
      expect(hist.body.messages.map((m: { body: string }) => m.body)).toEqual(["before going offline", "written offline"]);
    });
  });

  test("a message over the contract's 4,000 characters is held back with the reason in words", async () => {
    const room = uniqueName("big").toLowerCase();
    await withShots("refused", () => contexts, async () => {
      const [ann] = await twoUsersIn(room);
      // 4,000 code points pass; one more and the composer says why and will not send.
      await composer(ann).fill("é".repeat(4000));
      await ann.evaluate(() => {
        const t = document.querySelector("textarea")!;
        t.value = t.value + "!";
        t.dispatchEvent(new Event("input", { bubbles: true }));
      });
      await ann.getByText("Messages can be at most 4000 characters.").waitFor();
      await expect(ann.getByRole("button", { name: "Send" }).isDisabled()).resolves.toBe(true);
    });
  });

  test("a connect instance SIGKILLed mid-conversation: both pages reconnect and show every message once", async () => {
    const room = uniqueName("kill").toLowerCase();
    await withShots("sigkill", () => contexts, async () => {
      const [ann, ben] = await twoUsersIn(room);
      const first = ["one from ann", "two from ben", "three from ann", "four from ben"];
      for (const [i, body] of first.entries()) await sendMessage(i % 2 ? ben : ann, body);
      await expectEachOnce(ann, first);
      await expectEachOnce(ben, first);

      // Kill the connect instance ann's page is on (ben's may be there too). Not "the instance with
      // the most connections": the earlier tests' pages stay open and may tip that count.
      const victim = cluster.ready.connect.findIndex((u) => socketUrl.get(ann)?.startsWith(u));
      expect(victim).toBeGreaterThanOrEqual(0);
      const logs = await Promise.all([recordStatus(ann), recordStatus(ben)]);
      const pid = cluster.pid("connect", victim);
      process.kill(pid, "SIGKILL");
      // While a page is cut off, a third user posts: the pages must get these from sync.
      const carol = await registerUser(base);
      const during = ["five from carol", "six from carol", "seven from carol"];
      for (const body of during) {
        const r = await http(base, "POST", `/api/rooms/${room}/messages`, { token: carol.token, body: { body } });
        expect(r.status).toBe(202);
      }
      await eventually(async () => (await logs[0]!()).includes("Reconnecting…"), 20_000, "ann's page reconnecting");
      await connected(ann, 60_000);
      await connected(ben, 60_000);
      const after = ["eight from ann", "nine from ben"];
      await sendMessage(ann, after[0]!);
      await sendMessage(ben, after[1]!);
      const all = [...first, ...during, ...after];
      await expectEachOnce(ann, all, 60_000);
      await expectEachOnce(ben, all, 60_000);
    });
  });
});

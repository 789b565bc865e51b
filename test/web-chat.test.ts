// The web app in Chromium, two users in two browser contexts, against `bun run cluster
// --connect 2`: rooms, members, typing, direct messages, unread badges on two tabs, the session
// across reloads, Log out, 390 px, stale errors, registration rules, and the page's
// Content-Security-Policy.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Browser, BrowserContext, Page } from "playwright-core";
import type { ProcessCluster } from "./support/process-cluster.ts";
import { registerUser, uniqueName } from "./support/http.ts";
import { composer, connected, conversations, expectEachOnce, joinRoom, launchChromium, messages, register, sendMessage, webCluster, withShots } from "./support/web.ts";

// Page-side code in evaluate() runs in the browser; this program has no DOM types.
declare const document: any, localStorage: any;

let cluster: ProcessCluster;
let browser: Browser;
let base: string;
const contexts: BrowserContext[] = [];
const cspErrors: string[] = [];

beforeAll(async () => {
  [cluster, browser] = await Promise.all([webCluster(), launchChromium()]);
  base = cluster.ready.api[0]!;
});
afterAll(async () => {
  await browser?.close();
  await cluster?.stop();
});

async function newPage(width = 1280, height = 800): Promise<Page> {
  const ctx = contexts.find((c) => c.pages().length === 0) ?? (await browser.newContext({ viewport: { width, height } }));
  if (!contexts.includes(ctx)) contexts.push(ctx);
  return watch(await ctx.newPage());
}
function watch(p: Page): Page {
  p.on("console", (m) => {
    if (/Content Security Policy/i.test(m.text())) cspErrors.push(m.text());
  });
  return p;
}
const name = (p: string) => uniqueName(p).toLowerCase();
const badge = (page: Page, item: RegExp, n: number) => conversations(page).getByRole("button", { name: item }).getByLabel(`${n} unread`, { exact: true });
const anyBadge = (page: Page, item: RegExp) => conversations(page).getByRole("button", { name: item }).getByLabel(/unread$/);

describe("web app", () => {
  let alice: Page, bob: Page, bob2: Page;
  let aliceName: string, bobName: string;
  const room = name("room");

  test("two users register, chat in a room, and see members and typing", async () => {
    await withShots("room chat", () => contexts, async () => {
      [alice, bob] = await Promise.all([newPage(), (async () => {
        const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
        contexts.push(ctx);
        return watch(await ctx.newPage());
      })()]);
      aliceName = name("alice");
      bobName = name("bob");
      await register(alice, base, aliceName);
      await register(bob, base, bobName);
      await expect(alice.getByText(aliceName, { exact: true }).first().isVisible()).resolves.toBe(true);
      await joinRoom(alice, room);
      await joinRoom(bob, room);
      const members = alice.getByRole("region", { name: "Members" });
      await members.getByText(bobName).waitFor({ timeout: 15_000 });
      await members.getByText(aliceName).waitFor();

      await composer(alice).fill("typing something");
      await bob.getByText(`${aliceName} is typing…`).waitFor({ timeout: 15_000 });
      await composer(alice).press("Enter");
      await sendMessage(bob, `hello ${aliceName}`);
      const expected = ["typing something", `hello ${aliceName}`];
      await expectEachOnce(alice, expected);
      await expectEachOnce(bob, expected);
      const item = messages(bob).getByRole("listitem").filter({ hasText: "typing something" });
      await expect(item.getByText(aliceName).isVisible()).resolves.toBe(true);
      await expect(item.locator("time").count()).resolves.toBe(1);
    });
  });

  test("a direct message shows unread badges on both of the user's tabs, and reading it clears both", async () => {
    await withShots("dm unread", () => contexts, async () => {
      bob2 = watch(await bob.context().newPage()); // a second tab: same saved session
      await bob2.goto(base);
      await connected(bob2);

      await alice.getByRole("textbox", { name: "Direct message" }).fill(bobName.toUpperCase());
      await alice.getByRole("button", { name: "Start" }).click();
      await alice.getByRole("heading", { name: bobName, exact: true }).waitFor();
      await sendMessage(alice, "psst, bob");
      await sendMessage(alice, "are you there?");
      await expectEachOnce(alice, ["psst, bob", "are you there?"]);

      const dm = new RegExp(`^${bobName === aliceName ? "" : aliceName}`);
      await badge(bob, dm, 2).waitFor({ timeout: 15_000 });
      await badge(bob2, dm, 2).waitFor({ timeout: 15_000 });
      // A room message while bob has the room open and visible in his first tab: it is read
      // there at once, so his second tab shows no badge for the room.
      await alice.getByRole("button", { name: new RegExp(`^${room}`) }).click();
      await sendMessage(alice, "room again");
      await messages(bob).getByText("room again").waitFor({ timeout: 15_000 });
      await anyBadge(bob2, new RegExp(`^${room}`)).waitFor({ state: "detached", timeout: 15_000 });

      await conversations(bob).getByRole("button", { name: dm }).click();
      await expectEachOnce(bob, ["psst, bob", "are you there?"]);
      await anyBadge(bob, dm).waitFor({ state: "detached", timeout: 15_000 });
      await anyBadge(bob2, dm).waitFor({ state: "detached", timeout: 15_000 });
      // Now the room is not open anywhere: a new room message is unread on both tabs.
      await sendMessage(alice, "room once more");
      await badge(bob, new RegExp(`^${room}`), 1).waitFor({ timeout: 15_000 });
      await badge(bob2, new RegExp(`^${room}`), 1).waitFor({ timeout: 15_000 });

      // A reply reaches alice's DM live and the list shows it first.
      await sendMessage(bob, "yes!");
      await alice.getByRole("button", { name: new RegExp(`^${bobName}`) }).click();
      await expectEachOnce(alice, ["psst, bob", "are you there?", "yes!"]);
      const first = conversations(alice).getByRole("button").first();
      await expect(first.locator(".title").textContent()).resolves.toBe(bobName);
    });
  });

  test("a reload keeps the session; Log out ends it", async () => {
    await withShots("session", () => contexts, async () => {
      await bob2.close();
      await bob.reload();
      await connected(bob);
      await bob.getByText(bobName, { exact: true }).first().waitFor();
      const before = await bob.evaluate(() => localStorage.getItem("bunchat.token"));
      await bob.getByRole("button", { name: "Log out" }).click();
      await bob.getByRole("textbox", { name: "User name" }).waitFor();
      // Ended on the server too: the old token no longer works.
      expect((await fetch(`${base}/api/me`, { headers: { authorization: `Bearer ${before}` } })).status).toBe(401);
      await bob.reload();
      await bob.getByRole("button", { name: "Log in" }).waitFor();
      await expect(bob.evaluate(() => localStorage.length)).resolves.toBe(0);
      // Logging in again works and brings the conversations back.
      await bob.getByRole("textbox", { name: "User name" }).fill(bobName);
      await bob.getByRole("textbox", { name: "Password" }).fill("wrong-password");
      await bob.getByRole("button", { name: "Log in" }).click();
      await bob.getByRole("alert").filter({ hasText: "Wrong user name or password." }).waitFor();
      await bob.getByRole("textbox", { name: "Password" }).fill("correct-horse-1");
      await bob.getByRole("button", { name: "Log in" }).click();
      await connected(bob);
      await conversations(bob).getByRole("button", { name: new RegExp(`^${room}`) }).waitFor();
      // The token revoked elsewhere (4401 on the socket): back to the sign-in form, told why.
      const token = await bob.evaluate(() => localStorage.getItem("bunchat.token"));
      const res = await fetch(`${base}/api/sessions/current`, { method: "DELETE", headers: { authorization: `Bearer ${token}` } });
      expect(res.status).toBe(204);
      await bob.getByRole("alert").filter({ hasText: "You have been signed out. Please log in again." }).waitFor({ timeout: 15_000 });
      await bob.getByRole("button", { name: "Log in" }).waitFor();
    });
  });

  test("at 390 px wide nothing scrolls sideways, even with long names and unbroken text", async () => {
    await withShots("390px", () => contexts, async () => {
      const ctx = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
      contexts.push(ctx);
      const page = watch(await ctx.newPage());
      const overflow = () => page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      await page.goto(base);
      await page.getByRole("button", { name: "Register" }).waitFor();
      expect(await overflow()).toBeLessThanOrEqual(0);
      await register(page, base, name("phone").padEnd(32, "x"));
      await joinRoom(page, ("r" + name("long")).padEnd(64, "y"));
      await sendMessage(page, "x".repeat(500));
      await sendMessage(page, "a normal sentence with words that wrap nicely on a phone screen");
      await expectEachOnce(page, ["x".repeat(500)]);
      expect(await overflow()).toBeLessThanOrEqual(0);
    });
  });

  test("the page is served with a Content-Security-Policy that allows only this origin and the connect tier, and breaks nothing", async () => {
    const res = await fetch(base + "/");
    const csp = res.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("default-src 'self'");
    for (const ws of cluster.ready.connect) expect(csp).toContain(new URL(ws).origin);
    const html = await res.text();
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/); // no inline script
    expect(html).not.toContain("style=");
    expect(cspErrors).toEqual([]);
  });

  test("an error from one action is taken down when the next one succeeds", async () => {
    await withShots("stale alert", () => contexts, async () => {
      const shown = (text: string) => alice.getByRole("alert").filter({ hasText: text });
      await alice.getByRole("textbox", { name: "Join room" }).fill("no spaces allowed");
      await alice.getByRole("button", { name: "Join", exact: true }).click();
      await shown("Room names are 1 to 64 letters").waitFor();
      const other = name("room2");
      await joinRoom(alice, other);
      await shown("Room names are").waitFor({ state: "hidden", timeout: 5_000 });

      await alice.getByRole("textbox", { name: "Direct message" }).fill(name("nobody"));
      await alice.getByRole("button", { name: "Start" }).click();
      await shown("There is no user called").waitFor();
      await conversations(alice).getByRole("button", { name: new RegExp(`^${room}`) }).click();
      await alice.getByRole("heading", { name: room, exact: true }).waitFor();
      await shown("There is no user called").waitFor({ state: "hidden", timeout: 5_000 });
    });
  });

  test("registering says which rule a name or password breaks", async () => {
    await withShots("register rules", () => contexts, async () => {
      const page = await newPage();
      await page.goto(base);
      const alert = page.getByRole("alert");
      await page.getByRole("textbox", { name: "User name" }).fill("a<b>");
      await page.getByRole("textbox", { name: "Password" }).fill("correct-horse-1");
      await page.getByRole("button", { name: "Register" }).click();
      await alert.filter({ hasText: /^User names are 3 to 32 letters, digits, dots, dashes or underscores\.$/ }).waitFor();
      await page.getByRole("textbox", { name: "User name" }).fill(name("rules"));
      await page.getByRole("textbox", { name: "Password" }).fill("short");
      await page.getByRole("button", { name: "Register" }).click();
      await alert.filter({ hasText: /^Passwords are 8 to 128 characters\.$/ }).waitFor();
      await page.getByRole("textbox", { name: "Password" }).fill("correct-horse-1");
      await page.getByRole("button", { name: "Register" }).click();
      await connected(page);
    });
  });

  test("too many wrong passwords: the 429 is said in plain words", async () => {
    await withShots("login 429", () => contexts, async () => {
      const user = await registerUser(base, name("lock"));
      const page = await newPage();
      await page.goto(base);
      await page.getByRole("textbox", { name: "User name" }).fill(user.userName);
      await page.getByRole("textbox", { name: "Password" }).fill("not-the-password");
      const alert = page.getByRole("alert");
      for (let i = 0; i < 12; i++) {
        await page.getByRole("button", { name: "Log in" }).click();
        await alert.filter({ hasText: /./ }).waitFor();
        if ((await alert.textContent())?.startsWith("Too many")) break;
        await page.getByRole("button", { name: "Log in" }).and(page.locator(":enabled")).waitFor();
      }
      await expect(alert.textContent()).resolves.toBe("Too many failed log-ins for this name. Wait a few minutes and try again.");
    });
  });
});

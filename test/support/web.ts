// Browser tests: Debian's Chromium driven by playwright-core (never a downloaded browser)
// against `bun run cluster --connect 2` as a real process tree. A test wrapped in withShots
// saves a screenshot of every open page to test-screenshots/ (ignored by git) when it fails.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { spawnCluster, type ProcessCluster } from "./process-cluster.ts";

const SHOTS = join(import.meta.dir, "../../test-screenshots");
export const PASSWORD = "correct-horse-1";

export async function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run"],
  });
}

/** The cluster webCluster() started last: withShots prints its warnings when a test fails while it runs. */
let lastCluster: ProcessCluster | undefined;

/** `bun run cluster --connect 2` on free ports, with a send budget that fixtures of 120 messages fit in. */
export async function webCluster(): Promise<ProcessCluster> {
  lastCluster = await spawnCluster(["--connect", "2"], { IM_RATE_LIMIT: "500", IM_RATE_BURST: "500" }, 90_000);
  return lastCluster;
}

/** Runs a test body; on failure saves a full-page screenshot of every page of the given contexts and prints the last cluster warnings. */
export async function withShots(name: string, contexts: () => BrowserContext[], body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (e) {
    mkdirSync(SHOTS, { recursive: true });
    const slug = name.replace(/[^a-z0-9]+/gi, "-").slice(0, 60);
    let i = 0;
    for (const ctx of contexts())
      for (const p of ctx.pages()) await p.screenshot({ path: join(SHOTS, `${slug}-${++i}.png`), fullPage: true }).catch(() => undefined);
    // What the cluster warned about meanwhile (its log lines are JSON with a level).
    const running = lastCluster?.proc.exitCode === null ? lastCluster : undefined;
    const warnings = (running?.err.all ?? []).filter((l) => /"level":"(warn|error)"/.test(l)).slice(-30);
    if (warnings.length) console.error(`${name}: the cluster's last warnings and errors:\n${warnings.join("\n")}`);
    throw e;
  }
}

/** Registers a new user through the sign-in form and waits for the Connected status. */
export async function register(page: Page, base: string, name: string): Promise<void> {
  await page.goto(base);
  await page.getByRole("textbox", { name: "User name" }).fill(name);
  await page.getByRole("textbox", { name: "Password" }).fill(PASSWORD);
  await page.getByRole("button", { name: "Register" }).click();
  await connected(page);
}

export const connected = (page: Page, timeout = 30_000) => page.getByRole("status").filter({ hasText: /^Connected$/ }).waitFor({ timeout });

export const composer = (page: Page) => page.getByRole("textbox", { name: "Message", exact: true });
export const messages = (page: Page) => page.getByRole("log", { name: "Messages" });
export const conversations = (page: Page) => page.getByRole("navigation", { name: "Conversations" });

export async function joinRoom(page: Page, room: string): Promise<void> {
  await page.getByRole("textbox", { name: "Join room" }).fill(room);
  await page.getByRole("button", { name: "Join", exact: true }).click();
  await page.getByRole("heading", { name: room, exact: true }).waitFor();
}

export async function sendMessage(page: Page, body: string): Promise<void> {
  await composer(page).fill(body);
  await composer(page).press("Enter");
}

/** The bodies shown in the open conversation's log, in order. */
export const bodies = (page: Page) => messages(page).locator("li .body").allTextContents();

/** Waits until the log holds every one of `expected` exactly once and nothing is pending or failed. */
export async function expectEachOnce(page: Page, expected: string[], timeoutMs = 30_000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  let seen: string[] = [];
  for (;;) {
    seen = await bodies(page);
    const pending = await messages(page).getByText(/^(Sending…|Failed)$/).count();
    const ok = pending === 0 && expected.every((b) => seen.filter((s) => s === b).length === 1);
    if (ok) return seen;
    if (Date.now() > deadline) throw new Error(`log does not hold each message once after ${timeoutMs} ms; expected ${JSON.stringify(expected)}, saw ${JSON.stringify(seen)} (${pending} pending or failed)`);
    await page.waitForTimeout(200);
  }
}

// Every relative link in the repository's Markdown files resolves inside the repository: the
// file (or folder) exists, and a #fragment names a heading of the target Markdown file (GitHub's
// anchor rule). A clean clone has nothing outside the repository, so a link that leaves it
// (../shared/...) is dangling too.
import { expect, test } from "bun:test";
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");

/** GitHub's heading anchor: lower case, punctuation other than - and _ dropped, spaces to -. */
const slug = (heading: string) =>
  heading
    .replace(/`/g, "")
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, "")
    .replace(/\s/g, "-");

/** Markdown text without fenced code blocks and inline code spans (links there are not links). */
const prose = (md: string) => md.replace(/^```[\s\S]*?^```/gm, "").replace(/`[^`\n]*`/g, "");

function anchors(file: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const m of readFileSync(file, "utf8").replace(/^```[\s\S]*?^```/gm, "").matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const base = slug(m[1]);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n ? `${base}-${n}` : base);
  }
  return out;
}

/** The dangling relative links of one Markdown file, as "target (why)". */
function danglingLinks(file: string): string[] {
  const bad: string[] = [];
  for (const m of prose(readFileSync(file, "utf8")).matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
    const target = m[1];
    if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // http:, https:, mailto:
    const [path, fragment] = target.split("#", 2) as [string, string | undefined];
    const abs = path ? resolve(dirname(file), decodeURIComponent(path)) : file;
    if (relative(ROOT, abs).startsWith("..")) bad.push(`${target} (outside the repository)`);
    else if (!existsSync(abs)) bad.push(`${target} (no such file)`);
    else if (fragment && abs.endsWith(".md") && statSync(abs).isFile() && !anchors(abs).has(fragment)) bad.push(`${target} (no such heading)`);
  }
  return bad;
}

test("the slug rule gives GitHub's anchors", () => {
  expect(slug("Co-located roles (`bun run node --roles …`)")).toBe("co-located-roles-bun-run-node---roles-");
  expect(slug("Acknowledgement modes (`IM_ACK_MODE`)")).toBe("acknowledgement-modes-im_ack_mode");
  expect(slug("Redis losing its tail: the seq fence")).toBe("redis-losing-its-tail-the-seq-fence");
});

test("a dangling link is caught: a file outside the repository, a missing file, a missing heading", () => {
  const probe = join(ROOT, "test", "fixtures", "links.md");
  expect(danglingLinks(probe)).toEqual(["../../../shared/CONTRACT.md (outside the repository)", "nothing-here.md (no such file)", "../../README.md#no-such-heading (no such heading)"]);
});

test("every relative link in the repository's Markdown files resolves inside it", async () => {
  const files = [...new Bun.Glob("**/*.md").scanSync({ cwd: ROOT })].filter((f) => !f.startsWith("node_modules/") && !f.includes("/node_modules/") && !f.startsWith("test/fixtures/"));
  expect(files).toContain("README.md");
  expect(files).toContain("bench/README.md");
  const bad = files.flatMap((f) => danglingLinks(join(ROOT, f)).map((l) => `${f}: ${l}`));
  expect(bad).toEqual([]);
});

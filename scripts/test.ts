// Runs the unit and integration tests (*.test.ts under test/ and src/) with `bun test`,
// streaming its output, then prints one line on stdout: "N passed, N failed".
// Exits non-zero if a test failed or bun test itself failed.
//
//   bun scripts/test.ts                      every test
//   bun scripts/test.ts test/infra.test.ts   arguments are passed to bun test; any that does
//                                            not start with "-" replaces the default folders
//                                            (so give flag values as --flag=value)
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..");
const extra = Bun.argv.slice(2);
const paths = extra.some((a) => !a.startsWith("-")) ? [] : ["./test", "./src"];

const proc = Bun.spawn({
  cmd: [process.execPath, "test", "--timeout", "120000", ...paths, ...extra],
  cwd: ROOT,
  stdin: "inherit",
  stdout: "pipe",
  stderr: "pipe",
});

let passed: number | undefined;
let failed: number | undefined;
// Per-test result lines: the count to report if bun test dies before its summary.
const seen = { pass: 0, fail: 0 };

/** Copies a stream through unchanged while reading bun's summary lines (" 12 pass", " 0 fail"). */
async function relay(stream: ReadableStream<Uint8Array>, sink: NodeJS.WriteStream): Promise<void> {
  const decoder = new TextDecoder();
  let carry = "";
  const scan = (raw: string) => {
    const line = raw.replace(/\x1b\[[0-9;]*m/g, ""); // in case colours are forced on
    if (line.startsWith("(pass)")) seen.pass++;
    if (line.startsWith("(fail)")) seen.fail++;
    const m = /^\s*(\d+) (pass|fail)\s*$/.exec(line);
    if (m?.[2] === "pass") passed = Number(m[1]);
    if (m?.[2] === "fail") failed = Number(m[1]);
  };
  for await (const chunk of stream) {
    sink.write(chunk);
    const lines = (carry + decoder.decode(chunk, { stream: true })).split("\n");
    carry = lines.pop()!;
    lines.forEach(scan);
  }
  scan(carry + decoder.decode());
}

await Promise.all([relay(proc.stdout, process.stdout), relay(proc.stderr, process.stderr)]);
const code = await proc.exited;

if (passed === undefined || failed === undefined) {
  process.stderr.write(`scripts/test.ts: bun test ended (exit code ${code}) without its summary; counting the results it printed\n`);
  passed = seen.pass;
  failed = seen.fail;
}
process.stdout.write(`${passed} passed, ${failed} failed\n`);
process.exit(code === 0 && failed === 0 ? 0 : 1);

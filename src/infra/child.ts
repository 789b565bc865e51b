// One OS child process, spawned with Bun.spawn. Its stdout and stderr are read line by line
// (so it never blocks on a full pipe) and the last lines are kept for error messages.
// It runs in a session of its own: a terminal's Ctrl-C (sent to the whole foreground process
// group) reaches only us, and we stop children in order (roles before the databases they use).
// Should we die without stopping it, the OrphanGuard kills it.
import type { Subprocess } from "bun";
import type { OrphanGuard } from "./guard.ts";

export interface ChildOptions {
  cmd: string[];
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Called for every output line, stdout and stderr alike. */
  onLine?: (line: string) => void;
  /** Lines kept for tail(); default 40. */
  tailLines?: number;
  /** Kills the process should this one die without stopping it. */
  guard?: OrphanGuard;
}

/** A line longer than this is cut into pieces, so a child that never prints "\n" cannot grow memory. */
const MAX_LINE = 64 * 1024;

export class Child {
  readonly pid: number;
  /** Resolves with the exit code, or 128 + the signal number when a signal ended it. */
  readonly exited: Promise<number>;
  private readonly proc: Subprocess<"ignore", "pipe", "pipe">;
  private readonly lines: string[] = [];
  private readonly tailLines: number;
  private readonly pumps: Promise<void>;
  private done = false;

  constructor(opts: ChildOptions) {
    this.tailLines = opts.tailLines ?? 40;
    try {
      this.proc = Bun.spawn({ cmd: opts.cmd, env: opts.env, cwd: opts.cwd, stdin: "ignore", stdout: "pipe", stderr: "pipe", detached: true });
    } catch (err) {
      throw new Error(`cannot start ${opts.cmd[0]}: ${(err as Error).message}`);
    }
    this.pid = this.proc.pid;
    opts.guard?.add(this.pid);
    const onLine = (line: string) => {
      this.lines.push(line);
      if (this.lines.length > this.tailLines) this.lines.shift();
      opts.onLine?.(line);
    };
    this.pumps = Promise.all([pump(this.proc.stdout, onLine), pump(this.proc.stderr, onLine)]).then(() => undefined);
    this.exited = this.proc.exited.then(async (code) => {
      this.done = true;
      opts.guard?.remove(this.pid);
      // Output written just before exit may still be in the pipe; a grandchild holding the
      // pipe open must not delay us for long.
      await Promise.race([this.pumps, Bun.sleep(500)]);
      return code;
    });
  }

  get running(): boolean {
    return !this.done;
  }

  /** The last output lines, oldest first. */
  tail(): string {
    return this.lines.join("\n");
  }

  /** SIGTERM, then SIGKILL if still alive after timeoutMs; resolves once the process has exited. */
  async stop(timeoutMs = 10_000): Promise<number> {
    if (this.done) return this.exited;
    this.proc.kill("SIGTERM");
    const timer = Bun.sleep(timeoutMs).then(() => "timeout" as const);
    if ((await Promise.race([this.exited, timer])) === "timeout") this.proc.kill("SIGKILL");
    return this.exited;
  }
}

async function pump(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void): Promise<void> {
  const decoder = new TextDecoder();
  let buf = "";
  for await (const chunk of stream) {
    buf += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      onLine(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
    while (buf.length > MAX_LINE) {
      onLine(buf.slice(0, MAX_LINE));
      buf = buf.slice(MAX_LINE);
    }
  }
  buf += decoder.decode();
  if (buf) onLine(buf);
}

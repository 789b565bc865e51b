// Last line of defence against orphans. If this process dies without stopping its children
// (kill -9, a crash, a test runner that exits without running exit handlers), a small shell
// reaps them: it polls our PID once a second and, once we are gone, SIGKILLs the PIDs still
// listed in its file, then deletes the throwaway data folder if it was given one. The file only
// ever lists live children (removed as soon as they exit), so no unrelated process can be hit.
import { writeFileSync } from "node:fs";

const SCRIPT = `
trap '' INT HUP
while kill -0 "$1" 2>/dev/null; do sleep 1; done
[ -s "$2" ] && kill -9 $(cat "$2") 2>/dev/null
[ -n "$3" ] && sleep 1 && rm -rf -- "$3"
exit 0
`;

export class OrphanGuard {
  private readonly pids = new Set<number>();
  private closed = false;
  private readonly watcher: ReturnType<typeof Bun.spawn>;

  /**
   * file: where the live PIDs are kept for the watcher; any writable path of ours.
   * removeDir: a folder of throwaway data to delete as well (after the kills, when we died).
   */
  constructor(private readonly file: string, removeDir = "") {
    this.write();
    this.watcher = Bun.spawn({
      cmd: ["sh", "-c", SCRIPT, "bunchat-orphan-guard", String(process.pid), file, removeDir],
      stdio: ["ignore", "ignore", "ignore"],
      detached: true, // survives a signal to our process group, like the children it guards
    });
    this.watcher.unref(); // must not keep this process alive
  }

  add(pid: number): void {
    this.pids.add(pid);
    this.write();
  }

  remove(pid: number): void {
    if (this.pids.delete(pid)) this.write();
  }

  /** Ends the watcher: call after every child has been stopped. */
  close(): void {
    this.closed = true;
    this.watcher.kill("SIGKILL");
  }

  private write(): void {
    if (!this.closed) writeFileSync(this.file, [...this.pids].join(" ") + "\n");
  }
}

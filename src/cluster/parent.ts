// Notices the death of the process that started us. npm (and other wrappers) do not forward
// SIGTERM to their child, so `kill -TERM <npm pid>` would orphan the cluster to pid 1 with every
// process it started. Linux's PR_SET_PDEATHSIG is not reachable from Bun, so we poll getppid():
// an orphan is re-parented (to 1 or a subreaper), so any change of ppid means the parent is gone.

/**
 * Calls onGone once, as soon as a poll (every intervalMs, default 1000 ms) sees process.ppid
 * differ from its value at the call. Returns a function that stops watching. The timer does not
 * keep the process alive.
 */
export function watchParent(onGone: (was: number, now: number) => void, intervalMs = 1000, ppid: () => number = () => process.ppid): () => void {
  const was = ppid();
  const timer = setInterval(() => {
    const now = ppid();
    if (now === was) return;
    clearInterval(timer);
    onGone(was, now);
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

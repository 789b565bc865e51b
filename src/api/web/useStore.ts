// Re-renders a component when the client's store changes (batched per microtask by the store).
import { useEffect, useState } from "preact/hooks";
import type { ChatClient } from "../../client/index.ts";

export function useStore(client: ChatClient): number {
  const [version, setVersion] = useState(0);
  useEffect(() => client.store.subscribe(() => setVersion((v) => v + 1)), [client]);
  return version;
}

/** Re-renders every `ms` while `on` is true (typing indicators expire by time). */
export function useTicker(on: boolean, ms: number): void {
  const [, setTick] = useState(0);
  useEffect(() => {
    if (!on) return;
    const t = setInterval(() => setTick((n) => n + 1), ms);
    return () => clearInterval(t);
  }, [on, ms]);
}

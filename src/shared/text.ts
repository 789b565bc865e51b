// Text rules for every string a client sends (CONTRACT.md v1.1 "text"): valid Unicode only. A
// lone UTF-16 surrogate ("\ud800") cannot be stored in MySQL's utf8mb4 or encoded in UTF-8
// (MessagePack, JSON on the wire) without being changed, so it is refused at the edge, and what is
// stored is exactly what every client format and history return.

/** True if s holds no lone surrogate (ES2024 String.prototype.isWellFormed). */
export const isWellFormed = (s: string): boolean => s.isWellFormed();

/**
 * The path (e.g. "body", "items[2].name") of the first string in v — a string itself or inside
 * arrays and plain objects, keys included — that is not valid Unicode; undefined if there is none.
 * Walks at most `maxDepth` levels (deeper values are not looked at: bound the depth when decoding).
 */
export function illFormedPath(v: unknown, path = "value", maxDepth = 64): string | undefined {
  if (typeof v === "string") return isWellFormed(v) ? undefined : path;
  if (maxDepth <= 0 || typeof v !== "object" || v === null) return undefined;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const p = illFormedPath(v[i], `${path}[${i}]`, maxDepth - 1);
      if (p) return p;
    }
    return undefined;
  }
  for (const [k, x] of Object.entries(v)) {
    if (!isWellFormed(k)) return `${path} key`;
    const p = illFormedPath(x, path === "value" ? k : `${path}.${k}`, maxDepth - 1);
    if (p) return p;
  }
  return undefined;
}

/** The BAD_REQUEST message for an ill-formed string at `path`. */
export const illFormedMessage = (path: string) => `${path} is not valid Unicode (lone surrogate)`;

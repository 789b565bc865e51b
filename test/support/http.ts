// Small HTTP client for tests: JSON in, {status, body} out.
export interface HttpResult<T = any> {
  status: number;
  body: T;
}

export async function http<T = any>(base: string, method: string, path: string, opts: { token?: string; body?: unknown; raw?: string; headers?: Record<string, string> } = {}): Promise<HttpResult<T>> {
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  let body: string | undefined = opts.raw;
  if (opts.body !== undefined) {
    body = JSON.stringify(opts.body);
    headers["content-type"] = "application/json";
  } else if (opts.raw !== undefined) headers["content-type"] ??= "application/json";
  const res = await fetch(base + path, { method, headers, body });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // not JSON: return the text as is
  }
  return { status: res.status, body: parsed as T };
}

let userNo = 0;
/** A fresh, unique user name for this test process. */
export const uniqueName = (p = "u") => `${p}${process.pid.toString(36)}${Date.now().toString(36).slice(-5)}${++userNo}`.slice(0, 32);

/** Registers a user; a 429 (the hashing pool is busy on a loaded machine) is retried after a pause, as a client would. */
export async function registerUser(base: string, name = uniqueName(), password = "correct-horse-1") {
  let r = await http<{ userId: number; userName: string; token: string }>(base, "POST", "/api/users", { body: { userName: name, password } });
  for (let attempt = 0; r.status === 429 && attempt < 20; attempt++) {
    await Bun.sleep(500 + Math.random() * 500);
    r = await http(base, "POST", "/api/users", { body: { userName: name, password } });
  }
  if (r.status !== 201) throw new Error(`register failed: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** Polls until fn() resolves truthy (errors count as not yet) and returns that value; throws after timeoutMs. */
export async function eventually<T>(fn: () => Promise<T> | T, timeoutMs = 10_000, what = "condition"): Promise<NonNullable<T>> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ""}`);
    await Bun.sleep(25);
  }
}

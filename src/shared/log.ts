// JSON-line logger: a constant message plus fields. Child loggers carry tier/component.
// Never pass passwords, tokens or message bodies as fields.

export type Level = "debug" | "info" | "warn" | "error";
const RANK: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type Fields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  child(fields: Fields): Logger;
}

/** Query parameters may hold password hashes or message bodies: never let them reach a log. */
const redact = (s: string | undefined) => s?.replace(/\nparams: [\s\S]*?(\n    at |$)/, "\nparams: [redacted]$1");

function errorFields(v: unknown): unknown {
  if (!(v instanceof Error)) return v;
  const cause = (v as { cause?: { code?: unknown; message?: string } }).cause;
  return {
    name: v.name,
    message: redact(v.message),
    code: (v as { code?: unknown }).code ?? cause?.code,
    cause: cause?.message,
    stack: redact(v.stack),
  };
}

export function createLogger(opts: { level?: Level; base?: Fields; write?: (line: string) => void } = {}): Logger {
  const min = RANK[opts.level ?? "info"];
  const write = opts.write ?? ((line: string) => process.stderr.write(line + "\n"));
  const base = opts.base ?? {};
  const emit = (level: Level, msg: string, fields?: Fields) => {
    if (RANK[level] < min) return;
    const rec: Fields = { t: new Date().toISOString(), level, msg, ...base };
    if (fields) for (const k in fields) rec[k] = errorFields(fields[k]);
    write(JSON.stringify(rec));
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    child: (fields) => createLogger({ level: opts.level, base: { ...base, ...fields }, write }),
  };
}

/** A logger that drops everything: for tests and benchmarks that do not read logs. */
export const silentLogger: Logger = createLogger({ level: "error", write: () => {} });

// The web app (src/api/web/main.tsx) bundled by Bun's bundler, in memory, once per process:
// the api tier calls webAssets() at start and serves the result at / (index.html, app.js,
// app.css). Nothing is fetched at run time: Preact comes from node_modules.
import { join } from "node:path";

export interface WebAssets {
  html: string;
  js: string;
  css: string;
  icon: string;
}

const DIR = import.meta.dir;
let built: Promise<WebAssets> | undefined;

/** The bundled app; the first call builds it (a few hundred ms), later calls share that result. */
export function webAssets(): Promise<WebAssets> {
  built ??= build().catch((e) => {
    built = undefined; // let a later request try again
    throw e;
  });
  return built;
}

async function build(): Promise<WebAssets> {
  const out = await Bun.build({
    entrypoints: [join(DIR, "main.tsx")],
    target: "browser",
    minify: true,
    define: { "process.env.NODE_ENV": '"production"' },
  });
  if (!out.success) throw new AggregateError(out.logs, "web app build failed");
  const js = out.outputs.find((o) => o.kind === "entry-point");
  if (!js) throw new Error("web app build produced no entry point");
  return {
    html: await Bun.file(join(DIR, "index.html")).text(),
    js: await js.text(),
    css: await Bun.file(join(DIR, "app.css")).text(),
    icon: await Bun.file(join(DIR, "favicon.svg")).text(),
  };
}

/**
 * The page's Content-Security-Policy: everything from this origin only, no inline script or
 * style; WebSockets to the connect instances live when the page was served (their ws origins).
 */
export function contentSecurityPolicy(wsOrigins: string[]): string {
  return [`default-src 'self'`, `connect-src 'self' ${wsOrigins.join(" ")}`.trim(), `base-uri 'none'`, `form-action 'self'`, `frame-ancestors 'none'`].join("; ");
}

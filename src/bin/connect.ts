// `bun run connect`: one connect instance in this process (wiring in roles.ts).
import { startConnect } from "./roles.ts";
import { runRole } from "./run.ts";

await runRole("connect", (ctx) => startConnect(ctx));

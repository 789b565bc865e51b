// `bun run logic`: one logic instance in this process (wiring in roles.ts).
import { startLogic } from "./roles.ts";
import { runRole } from "./run.ts";

await runRole("logic", (ctx) => startLogic(ctx));

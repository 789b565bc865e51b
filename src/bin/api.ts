// `bun run api`: one api instance in this process (wiring in roles.ts).
import { startApi } from "./roles.ts";
import { runRole } from "./run.ts";

await runRole("api", (ctx) => startApi(ctx));

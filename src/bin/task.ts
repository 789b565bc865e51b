// `bun run task`: one task instance in this process (wiring in roles.ts).
import { startTask } from "./roles.ts";
import { runRole } from "./run.ts";

await runRole("task", (ctx) => startTask(ctx));

// Loaded once before every test file (bunfig.toml [test] preload). A hook registered here is
// global: this afterAll runs once, after the last file of the run.
import { afterAll } from "bun:test";
import { stopSharedInfra } from "./infra.ts";

afterAll(stopSharedInfra);

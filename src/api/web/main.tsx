// Entry point of the web app: a thin Preact view over the client library (src/client).
import { render } from "preact";
import { App } from "./App.tsx";

render(<App />, document.getElementById("app")!);

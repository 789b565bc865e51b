// The sign-in form: User name, Password, Log in (Enter) and Register; errors in role=alert.
import { useState } from "preact/hooks";
import { ChatError } from "../../client/index.ts";
import { USER_NAME_RE, passwordLengthOk } from "../../shared/protocol.ts";
import { plainWords } from "./words.ts";

export function SignIn(props: { notice: string; submit: (mode: "login" | "register", name: string, password: string) => Promise<void> }) {
  const [name, setName] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);

  const go = async (mode: "login" | "register") => {
    // A new name is checked here first, so the form says which rule it breaks (the server's
    // BAD_REQUEST does not say which in words a user reads); the same rules as logic's.
    if (mode === "register") {
      if (!USER_NAME_RE.test(name.trim())) return setError("User names are 3 to 32 letters, digits, dots, dashes or underscores.");
      if (!passwordLengthOk(password)) return setError("Passwords are 8 to 128 characters.");
    }
    setBusy(true);
    setError("");
    try {
      await props.submit(mode, name.trim(), password);
    } catch (e) {
      setError(e instanceof ChatError ? plainWords(e, mode) : String(e));
      setBusy(false);
    }
  };

  const message = error || props.notice;
  return (
    <main class="signin">
      <form
        class="card"
        onSubmit={(e) => {
          e.preventDefault();
          void go("login");
        }}
      >
        <h1 class="brand">
          <span class="logo" aria-hidden="true">
            b
          </span>
          bunchat
        </h1>
        <p class="muted">Sign in to chat, or register a new name.</p>
        <label for="signin-name">User name</label>
        <input id="signin-name" name="username" autocomplete="username" required value={name} onInput={(e) => setName(e.currentTarget.value)} />
        <label for="signin-password">Password</label>
        <input
          id="signin-password"
          name="password"
          type="password"
          autocomplete="current-password"
          required
          value={password}
          onInput={(e) => setPassword(e.currentTarget.value)}
        />
        <div role="alert" class={message ? "alert" : "alert empty"}>
          {message}
        </div>
        <div class="row">
          <button type="submit" class="primary" disabled={busy}>
            Log in
          </button>
          <button type="button" disabled={busy} onClick={() => void go("register")}>
            Register
          </button>
        </div>
      </form>
    </main>
  );
}

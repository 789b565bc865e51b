// The session: a saved token is resumed (checked with /api/me) so a reload keeps the user
// signed in; Log out, or the server revoking the token (4401), returns to the sign-in form.
import { useCallback, useEffect, useState } from "preact/hooks";
import { ChatClient, ChatError } from "../../client/index.ts";
import { Chat } from "./Chat.tsx";
import { SignIn } from "./SignIn.tsx";
import { OPEN_KEY, TOKEN_KEY } from "./keys.ts";
import { plainWords } from "./words.ts";

const newClient = () => new ChatClient({ baseUrl: "", sendTimeoutMs: 8_000 });

type Phase = "resuming" | "signedOut" | "signedIn";

export function App() {
  const [client, setClient] = useState(newClient);
  const [phase, setPhase] = useState<Phase>(() => (localStorage.getItem(TOKEN_KEY) ? "resuming" : "signedOut"));
  const [notice, setNotice] = useState("");

  const signedOut = useCallback(
    (message = "") => {
      client.close();
      localStorage.removeItem(TOKEN_KEY);
      sessionStorage.removeItem(OPEN_KEY); // the next user must not reopen this one's conversation
      setClient(newClient());
      setNotice(message);
      setPhase("signedOut");
    },
    [client],
  );

  const start = useCallback(async () => {
    localStorage.setItem(TOKEN_KEY, client.token!);
    await client.connect();
    setNotice("");
    setPhase("signedIn");
  }, [client]);

  useEffect(() => {
    if (phase !== "resuming") return;
    const token = localStorage.getItem(TOKEN_KEY)!;
    client
      .resume(token)
      .then(start)
      .catch((e: ChatError) => {
        if (e.code === "UNAUTHENTICATED") signedOut(plainWords(new ChatError("SIGNED_OUT", "")));
        else {
          setNotice(plainWords(e));
          setPhase("signedOut");
        }
      });
  }, [phase]);

  // Another tab logged out (the token was removed): this one follows.
  useEffect(() => {
    const onStorage = (e: StorageEvent) => {
      if (e.key === TOKEN_KEY && e.newValue === null && phase === "signedIn") signedOut();
    };
    addEventListener("storage", onStorage);
    return () => removeEventListener("storage", onStorage);
  }, [phase, signedOut]);

  if (phase === "resuming") return <main class="splash" aria-busy="true">Loading…</main>;
  if (phase === "signedOut")
    return (
      <SignIn
        notice={notice}
        submit={async (mode, name, password) => {
          await (mode === "register" ? client.register(name, password) : client.login(name, password));
          await start();
        }}
      />
    );
  return (
    <Chat
      client={client}
      onLogout={async () => {
        await client.logout().catch(() => undefined); // signed out here either way
        signedOut();
      }}
      onSignedOut={() => signedOut(plainWords(new ChatError("SIGNED_OUT", "")))}
    />
  );
}

// The signed-in screen: sidebar (who, connection, new conversation, conversation list) and the
// open conversation. Owns only view state: which conversation is open and the current alert.
import { useEffect, useState } from "preact/hooks";
import { unreadOf, type ChatClient, type SocketState } from "../../client/index.ts";
import { Conversation } from "./Conversation.tsx";
import { OPEN_KEY } from "./keys.ts";
import { Sidebar } from "./Sidebar.tsx";
import { useStore } from "./useStore.ts";
import { plainWords } from "./words.ts";

const STATUS: Record<SocketState, string> = {
  connecting: "Reconnecting…",
  open: "Connected",
  reconnecting: "Reconnecting…",
  offline: "Offline",
  signedOut: "Offline",
  closed: "Offline",
};

export function Chat(props: { client: ChatClient; onLogout: () => void; onSignedOut: () => void }) {
  const { client } = props;
  useStore(client);
  const [open, setOpen] = useState<string | undefined>(() => sessionStorage.getItem(OPEN_KEY) ?? undefined);
  const [alert, setAlert] = useState("");
  const [connection, setConnection] = useState<SocketState>(client.connection);
  const [visible, setVisible] = useState(document.visibilityState === "visible");

  useEffect(
    () =>
      client.on((e) => {
        if (e.type === "state") {
          setConnection(e.state);
          if (e.state === "open") setAlert("");
          if (e.state === "signedOut") props.onSignedOut();
        } else if (e.error.code !== "SIGNED_OUT") setAlert(plainWords(e.error, e.op ?? "other"));
      }),
    [client],
  );

  useEffect(() => {
    const online = () => client.setOnline(true);
    const offline = () => client.setOnline(false);
    const vis = () => setVisible(document.visibilityState === "visible");
    addEventListener("online", online);
    addEventListener("offline", offline);
    document.addEventListener("visibilitychange", vis);
    if (!navigator.onLine) offline();
    return () => {
      removeEventListener("online", online);
      removeEventListener("offline", offline);
      document.removeEventListener("visibilitychange", vis);
    };
  }, [client]);

  // Opening a conversation is the user's next action: an error left from an earlier one is stale.
  const select = (conv: string) => {
    setAlert("");
    setOpen(conv);
    sessionStorage.setItem(OPEN_KEY, conv);
    client.open(conv).catch((e) => setAlert(plainWords(e)));
  };

  // A conversation restored after a reload is loaded like a clicked one.
  useEffect(() => {
    if (open) select(open);
  }, []);

  // Read positions: the open conversation, while the page is visible, is read up to its last message.
  const conv = open ? client.store.convs.get(open) : undefined;
  useEffect(() => {
    if (conv && visible && conv.loaded && conv.lastSeq > conv.readSeq) void client.markRead(conv.conv);
  });

  const unread = client.store.list().reduce((n, c) => n + unreadOf(c), 0);
  useEffect(() => {
    document.title = unread ? `(${unread}) bunchat` : "bunchat";
  }, [unread]);

  return (
    <div class={open ? "chat has-open" : "chat"}>
      <Sidebar client={client} open={open} status={STATUS[connection]} select={select} onLogout={props.onLogout} setAlert={setAlert} />
      <main class="main">
        <div role="alert" class={alert ? "alert banner" : "alert empty"}>
          {alert}
          {alert && (
            <button type="button" class="link" onClick={() => setAlert("")}>
              Dismiss
            </button>
          )}
        </div>
        {conv ? (
          <Conversation key={conv.conv} client={client} conv={conv} />
        ) : (
          <div class="empty-state">
            <h2>Welcome, {client.me?.userName}</h2>
            <p class="muted">Join a room or start a direct message to begin.</p>
          </div>
        )}
      </main>
    </div>
  );
}

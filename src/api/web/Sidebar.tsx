// Who is signed in, the connection status, new conversations (Join room, Direct message) and
// the conversation list (most recent first, with `N unread` badges).
import { useState } from "preact/hooks";
import { ChatError, unreadOf, type ChatClient, type ConvState } from "../../client/index.ts";
import { ROOM_ID_RE } from "../../shared/protocol.ts";
import { plainWords } from "./words.ts";

export const convTitle = (c: ConvState) => (c.kind === "room" ? c.room! : (c.peer?.userName ?? "Direct message"));

export function Sidebar(props: {
  client: ChatClient;
  open?: string;
  status: string;
  select: (conv: string) => void;
  onLogout: () => void;
  setAlert: (s: string) => void;
}) {
  const { client } = props;
  const [room, setRoom] = useState("");
  const [peer, setPeer] = useState("");

  const join = async (e: Event) => {
    e.preventDefault();
    const id = room.trim();
    if (!ROOM_ID_RE.test(id)) return props.setAlert("Room names are 1 to 64 letters, digits, dashes or underscores.");
    const c = await client.joinRoom(id);
    setRoom("");
    props.select(c.conv);
  };
  const start = async (e: Event) => {
    e.preventDefault();
    const name = peer.trim();
    if (!name) return;
    try {
      const c = await client.startDirect(name);
      setPeer("");
      props.select(c.conv);
    } catch (err) {
      const ce = err as ChatError;
      props.setAlert(ce.code === "NOT_FOUND" || ce.code === "BAD_REQUEST" ? `There is no user called “${name}”.` : plainWords(ce));
    }
  };

  const online = props.status === "Connected";
  return (
    <aside class="sidebar">
      <header class="me">
        <span class="logo" aria-hidden="true">
          b
        </span>
        <div class="who">
          <strong class="name">{client.me?.userName}</strong>
          <p role="status" class={online ? "status ok" : "status warn"}>
            {props.status}
          </p>
        </div>
        <button type="button" class="ghost" onClick={props.onLogout}>
          Log out
        </button>
      </header>
      <form class="inline" onSubmit={join}>
        <label for="join-room" class="sr-only">
          Join room
        </label>
        <input id="join-room" placeholder="Join room, e.g. lobby" value={room} onInput={(e) => setRoom(e.currentTarget.value)} />
        <button type="submit">Join</button>
      </form>
      <form class="inline" onSubmit={start}>
        <label for="direct-message" class="sr-only">
          Direct message
        </label>
        <input id="direct-message" placeholder="Direct message a user" autocomplete="off" value={peer} onInput={(e) => setPeer(e.currentTarget.value)} />
        <button type="submit">Start</button>
      </form>
      <nav aria-label="Conversations" class="convs">
        <ul>
          {client.store.list().map((c) => {
            const unread = unreadOf(c);
            return (
              <li key={c.conv}>
                <button type="button" class={c.conv === props.open ? "conv active" : "conv"} aria-current={c.conv === props.open ? "true" : undefined} onClick={() => props.select(c.conv)}>
                  <span class={c.kind === "room" ? "avatar room" : "avatar dm"} aria-hidden="true">
                    {c.kind === "room" ? "#" : convTitle(c).slice(0, 1).toUpperCase()}
                  </span>
                  <span class="title">{convTitle(c)}</span>
                  {unread > 0 && (
                    <span class="badge" role="img" aria-label={`${unread} unread`}>
                      {unread > 99 ? "99+" : unread}
                    </span>
                  )}
                </button>
              </li>
            );
          })}
        </ul>
        {client.store.convs.size === 0 && <p class="muted small">No conversations yet.</p>}
      </nav>
    </aside>
  );
}

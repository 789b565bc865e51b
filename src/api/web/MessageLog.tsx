// The message log: opens at the newest message, stays pinned to the bottom while the reader is
// there, and loads the page before the oldest (beforeSeq) when scrolled to the top, keeping the
// visible messages in place. Own pending sends show Sending…, failed ones Failed and Retry.
import { useLayoutEffect, useRef } from "preact/hooks";
import type { ChatClient, ConvState, Message, PendingMessage } from "../../client/index.ts";

const NEAR_PX = 80;
/** The time of day; earlier days also get their date. */
function time(ts: number): string {
  const d = new Date(ts);
  const t = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return d.toDateString() === new Date().toDateString() ? t : `${d.toLocaleDateString([], { month: "short", day: "numeric" })} ${t}`;
}

export function MessageLog(props: { client: ChatClient; conv: ConvState }) {
  const { client, conv } = props;
  const box = useRef<HTMLDivElement>(null);
  const pinned = useRef(true); // at the bottom: follow new messages
  const anchor = useRef<{ height: number; top: number } | undefined>(undefined); // set while an older page loads
  const loadingOlder = useRef(false);
  const { messages, pending } = client.store.timeline(conv.conv);

  const loadOlder = async () => {
    const el = box.current;
    if (!el || loadingOlder.current || !conv.hasOlder) return;
    loadingOlder.current = true;
    anchor.current = { height: el.scrollHeight, top: el.scrollTop };
    try {
      await client.loadOlder(conv.conv);
    } finally {
      loadingOlder.current = false;
    }
  };

  useLayoutEffect(() => {
    const el = box.current;
    if (!el) return;
    if (anchor.current) {
      // Older messages went in above: keep what the reader was looking at where it was.
      el.scrollTop = el.scrollHeight - anchor.current.height + anchor.current.top;
      anchor.current = undefined;
    } else if (pinned.current) el.scrollTop = el.scrollHeight;
    // A first page that does not fill the box cannot be scrolled up: load more right away.
    if (conv.loaded && conv.hasOlder && el.scrollHeight <= el.clientHeight) void loadOlder();
  });

  const onScroll = () => {
    const el = box.current!;
    pinned.current = el.scrollHeight - el.scrollTop - el.clientHeight < NEAR_PX;
    if (el.scrollTop < NEAR_PX) void loadOlder();
  };

  const mine = client.me?.userId;
  // In a direct conversation, the newest own message the other user has read gets "Seen".
  const seenSeq = conv.kind === "dm" ? Math.max(0, ...messages.filter((m) => m.from.userId === mine && m.seq <= conv.peerReadSeq).map((m) => m.seq)) : 0;
  return (
    <div ref={box} class="log" role="log" aria-label="Messages" aria-live="polite" tabIndex={0} onScroll={onScroll}>
      {conv.loaded && !conv.hasOlder && <p class="log-start muted small">This is the start of the conversation.</p>}
      {conv.hasOlder && <p class="log-start muted small">Scroll up for older messages…</p>}
      {!conv.loaded && <p class="log-start muted small">Loading…</p>}
      <ul>
        {messages.map((m) => (
          <MessageItem key={`s${m.seq}`} m={m} own={m.from.userId === mine} seen={m.seq === seenSeq && conv.peer?.userId !== mine} />
        ))}
        {pending.map((p) => (
          <PendingItem key={`p${p.clientMsgId}`} p={p} name={client.me?.userName ?? ""} retry={() => client.retry(conv.conv, p.clientMsgId)} />
        ))}
      </ul>
    </div>
  );
}

function MessageItem({ m, own, seen }: { m: Message; own: boolean; seen: boolean }) {
  return (
    <li class={own ? "msg own" : "msg"} data-seq={m.seq}>
      <div class="meta">
        <span class="from">{m.from.userName}</span>
        <time dateTime={new Date(m.ts).toISOString()} title={new Date(m.ts).toLocaleString()}>
          {time(m.ts)}
        </time>
      </div>
      <p class="body">{m.body}</p>
      {seen && <p class="seen">Seen</p>}
    </li>
  );
}

function PendingItem({ p, name, retry }: { p: PendingMessage; name: string; retry: () => void }) {
  return (
    <li class={`msg own ${p.state}`}>
      <div class="meta">
        <span class="from">{name}</span>
        {p.state === "pending" ? (
          <span class="state">Sending…</span>
        ) : (
          <>
            <span class="state failed">Failed</span>
            <button type="button" class="link" onClick={retry}>
              Retry
            </button>
          </>
        )}
      </div>
      <p class="body">{p.body}</p>
    </li>
  );
}

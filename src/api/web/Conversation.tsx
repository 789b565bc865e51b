// One open conversation: its heading, the members of a room, the message log, who is typing,
// and the composer.
import { useEffect, useRef } from "preact/hooks";
import type { ChatClient, ConvState } from "../../client/index.ts";
import { Composer } from "./Composer.tsx";
import { MessageLog } from "./MessageLog.tsx";
import { convTitle } from "./Sidebar.tsx";
import { useTicker } from "./useStore.ts";

export function Conversation(props: { client: ChatClient; conv: ConvState }) {
  const { client, conv } = props;
  const typing = client.typingUsers(conv.conv);
  useTicker(typing.length > 0, 500);
  const section = useRef<HTMLElement>(null);
  // On a phone the list sits above the conversation: bring the opened one into view.
  useEffect(() => {
    if (matchMedia("(max-width: 760px)").matches) section.current?.scrollIntoView({ block: "start" });
  }, []);
  const members = conv.members ? [...conv.members.values()].sort((a, b) => a.userName.localeCompare(b.userName)) : [];
  return (
    <section ref={section} class="conversation" aria-labelledby="conv-title">
      <header class="conv-head">
        <h2 id="conv-title">{convTitle(conv)}</h2>
        <span class="muted small kind">{conv.kind === "room" ? "room" : "direct message"}</span>
      </header>
      <div class="conv-body">
        <div class="conv-main">
          <MessageLog client={client} conv={conv} />
          <p class="typing" aria-live="polite">
            {typing.length === 1 ? `${typing[0]!.userName} is typing…` : typing.length > 1 ? `${typing.map((u) => u.userName).join(", ")} are typing…` : ""}
          </p>
          <Composer client={client} conv={conv.conv} />
        </div>
        {conv.kind === "room" && (
          <section class="members" aria-label="Members">
            <h3>
              Online <span class="count">{conv.onlineCount ?? members.length}</span>
            </h3>
            <ul>
              {members.map((m) => (
                <li key={m.userId}>
                  <span class="dot" aria-hidden="true" />
                  {m.userName}
                  {m.userId === client.me?.userId && <span class="muted"> (you)</span>}
                </li>
              ))}
            </ul>
          </section>
        )}
      </div>
    </section>
  );
}

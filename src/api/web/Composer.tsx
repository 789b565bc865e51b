// The composer: Enter sends, Shift+Enter is a new line; typing sends a (throttled) typing op.
import { useState } from "preact/hooks";
import type { ChatClient } from "../../client/index.ts";

const MAX_CODE_POINTS = 4000;

export function Composer(props: { client: ChatClient; conv: string }) {
  const [text, setText] = useState("");
  const tooLong = [...text].length > MAX_CODE_POINTS;
  const send = () => {
    if (!text.trim() || tooLong) return;
    props.client.send(props.conv, text);
    setText("");
  };
  return (
    <form
      class="composer"
      onSubmit={(e) => {
        e.preventDefault();
        send();
      }}
    >
      <label for="composer-input" class="sr-only">
        Message
      </label>
      <textarea
        id="composer-input"
        rows={1}
        placeholder="Write a message…"
        value={text}
        aria-invalid={tooLong ? "true" : undefined}
        aria-describedby={tooLong ? "composer-hint" : undefined}
        onInput={(e) => {
          setText(e.currentTarget.value);
          if (e.currentTarget.value) props.client.typing(props.conv);
        }}
        onKeyDown={(e) => {
          if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
            e.preventDefault();
            send();
          }
        }}
      />
      <button type="submit" class="primary" disabled={!text.trim() || tooLong}>
        Send
      </button>
      {tooLong && <p class="hint" id="composer-hint">Messages can be at most {MAX_CODE_POINTS} characters.</p>}
    </form>
  );
}

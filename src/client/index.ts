// bunchat/client: a typed client of the bunchat contract for browsers and Bun.
//
//   const chat = new ChatClient({ baseUrl: "http://localhost:3000" });
//   await chat.login("alice", "correct-horse-1");
//   await chat.connect();
//   await chat.joinRoom("lobby");
//   await chat.open("room:lobby");
//   chat.send("room:lobby", "hello");
//   chat.store.subscribe(() => console.log(chat.store.timeline("room:lobby")));
export { ChatClient, TYPING_SHOW_MS, type ChatClientOptions, type ClientEvent } from "./client.ts";
export { HttpApi } from "./http.ts";
export { Socket, type Format, type SocketState } from "./socket.ts";
export { Store, unreadOf, type ConvState, type PendingMessage, type SendState } from "./store.ts";
export * from "./types.ts";
export { dmConv, roomConv, parseConv } from "../shared/protocol.ts";

// Errors in plain words for people (WEB-CLIENT.md: 429, 503, 4401, 4413, 4429 and the rest).
import type { ChatError } from "../../client/index.ts";

export function plainWords(e: ChatError, context: "login" | "register" | "send" | "other" = "other"): string {
  switch (e.code) {
    case "RATE_LIMITED":
      return context === "login"
        ? "Too many failed log-ins for this name. Wait a few minutes and try again."
        : "You are sending too fast. Wait a moment, then try again.";
    case "UNAVAILABLE":
    case "INTERNAL":
      return "The server is having trouble right now. Try again in a moment.";
    case "SIGNED_OUT":
      return "You have been signed out. Please log in again.";
    case "PAYLOAD_TOO_LARGE":
      return "That message is too long to send. Shorten it and try again.";
    case "UNAUTHENTICATED":
      return context === "login" ? "Wrong user name or password." : "Your session has ended. Please log in again.";
    case "CONFLICT":
      return "That user name is already taken. Pick another one.";
    case "NETWORK":
      return "Cannot reach the server. Check your connection.";
    case "FORBIDDEN":
      return "You are not allowed to do that.";
    case "NOT_FOUND":
      return "Not found.";
    case "BAD_REQUEST":
      if (context === "register" || context === "login")
        return "User names are 3 to 32 letters, digits, dots, dashes or underscores; passwords are 8 to 128 characters.";
      return context === "send" ? "That message cannot be sent (it may be empty or too long)." : "The server did not accept that.";
  }
}

// What the app keeps in the browser: the session token (localStorage: shared by tabs, kept
// across reloads until Log out) and the open conversation (sessionStorage: per tab).
export const TOKEN_KEY = "bunchat.token";
export const OPEN_KEY = "bunchat.open";

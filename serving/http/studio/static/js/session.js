// The API key of this tab: sessionStorage only (gone when the tab closes), never in a
// URL, a cookie or a log.

const KEY = "kiln.apiKey";

export function savedKey() {
  return sessionStorage.getItem(KEY);
}

export function saveKey(key) {
  sessionStorage.setItem(KEY, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY);
}

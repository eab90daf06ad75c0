// Kiln Studio: sign-in, the shell (navigation, balance) and a hash router over pages.
// A page is a module exporting ``mount(root, ctx)`` that returns a cleanup function;
// the editor, agentic, training, jobs and admin pages of part 2 are more rows in PAGES.

import { Api, ApiError } from "./api.js";
import { h, replace, toast } from "./dom.js";
import { errorView } from "./errors.js";
import { forgetKey, saveKey, savedKey } from "./session.js";
import { Store } from "./store.js";

const PAGES = [
  { path: "create", label: "Create", load: () => import("./pages/create.js") },
  { path: "gallery", label: "Gallery", load: () => import("./pages/gallery.js") },
  { path: "credits", label: "Credits", load: () => import("./pages/credits.js") },
];
const DEFAULT_PAGE = "create";
// Generations as jobs with live events (Prefer: respond-async), where the server has them.
const ASYNC_JOBS = true;

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const account = document.getElementById("account");
let ctx = null;
let cleanup = null;

function currentPath() {
  const path = location.hash.replace(/^#\/?/, "").split("?")[0];
  return PAGES.some((p) => p.path === path) ? path : DEFAULT_PAGE;
}

async function route() {
  if (!ctx) return;
  const path = currentPath();
  const page = PAGES.find((p) => p.path === path);
  for (const link of nav.querySelectorAll("a")) {
    if (link.dataset.page === path) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  cleanup?.();
  cleanup = null;
  const root = h("div", { class: `page page-${path}` });
  replace(main, root);
  document.title = `${page.label} · Kiln Studio`;
  try {
    const module = await page.load();
    cleanup = module.mount(root, ctx) || null;
  } catch (error) {
    replace(root, errorView(error));
  }
}

function renderAccount() {
  const balance = h("span", { class: "balance", id: "balance", "aria-live": "polite" });
  const update = (store) => {
    balance.textContent = `Balance: ${store.credits.balance} credits` + (store.credits.held ? ` (${store.credits.held} held)` : "");
  };
  ctx.store.subscribe(update);
  update(ctx.store);
  replace(account, balance, h("button", { type: "button", class: "btn btn-quiet", onclick: signOut }, "Sign out"));
}

function renderNav() {
  replace(
    nav,
    h("ul", {}, PAGES.map((p) => h("li", {}, h("a", { href: `#/${p.path}`, dataset: { page: p.path } }, p.label)))),
  );
}

async function start(key) {
  const api = new Api(key, { asyncJobs: ASYNC_JOBS });
  const store = new Store(api);
  await store.load(); // 401 here means the key is wrong
  ctx = { api, store };
  renderNav();
  renderAccount();
  await route();
}

function signOut() {
  forgetKey();
  cleanup?.();
  ctx = null;
  replace(nav);
  replace(account);
  signIn();
}

function signIn(problem) {
  const input = h("input", {
    id: "api-key", type: "password", name: "api-key", autocomplete: "off", required: true, spellcheck: "false",
  });
  const status = h("div", { class: "signin-status" }, problem ? errorView(problem) : null);
  const form = h(
    "form",
    { class: "signin card", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in to Kiln Studio"),
    h("p", {}, "Your API key stays in this tab (session storage) and is sent only in the Authorization header."),
    h("div", { class: "field" }, h("label", { for: "api-key" }, "API key"), input),
    h("button", { type: "submit", class: "btn btn-primary" }, "Sign in"),
    status,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    replace(status, h("p", {}, "Checking the key…"));
    try {
      await start(key);
      saveKey(key);
      toast("Signed in");
    } catch (error) {
      ctx = null;
      replace(status, errorView(error instanceof ApiError ? error : new Error(String(error))));
    }
  });
  replace(main, form);
  input.focus();
}

window.addEventListener("hashchange", route);

const key = savedKey();
if (key) {
  start(key).catch((error) => {
    forgetKey();
    signIn(error);
  });
} else {
  signIn();
}

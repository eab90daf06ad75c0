// Credits: the balance, what is held for work in flight, and the ledger entries, newest
// first ("Load older" pages with the last entry's id).

import { h, replace } from "../dom.js";
import { errorView } from "../errors.js";

const PAGE = 50;

export function mount(root, ctx) {
  const summary = h("dl", { class: "credit-summary" });
  const rows = h("tbody");
  const older = h("button", { type: "button", class: "btn", hidden: true }, "Load older");
  const status = h("div", { "aria-live": "polite" });
  let before = null;

  async function load() {
    try {
      const page = await ctx.api.credits({ limit: PAGE, before });
      replace(summary,
        h("dt", {}, "Balance"), h("dd", { id: "credit-balance" }, `${page.balance} credits`),
        h("dt", {}, "Held"), h("dd", { id: "credit-held" }, `${page.held} credits`));
      for (const e of page.entries) {
        rows.append(h("tr", {},
          h("td", {}, String(e.id)), h("td", {}, e.kind), h("td", { class: "num" }, String(e.amount)),
          h("td", { class: "num" }, String(e.held)), h("td", { class: "mono" }, e.reference || "—"),
          h("td", {}, new Date(e.created).toLocaleString())));
      }
      if (page.entries.length) before = page.entries[page.entries.length - 1].id;
      older.hidden = page.entries.length < PAGE;
      replace(status);
    } catch (error) {
      replace(status, errorView(error));
    }
  }

  older.addEventListener("click", load);
  replace(root,
    h("h1", {}, "Credits"),
    summary,
    h("table", { class: "ledger", "aria-label": "Ledger entries" },
      h("thead", {}, h("tr", {}, ["Entry", "Kind", "Amount", "Held", "Reference", "When"].map((c) => h("th", { scope: "col" }, c)))),
      rows),
    older, status);
  load();
}

// The caller's assets, newest first: filters by kind, model and license state (GET
// /v1/assets's own filters) and cursor paging ("Load more" passes the last id).

import { field, h, replace } from "../dom.js";
import { errorView } from "../errors.js";
import { imageCard } from "../parts/imagecard.js";

const PAGE = 12;
const KINDS = [["", "All kinds"], ["base", "Base"], ["artist_style", "Artist style"], ["private_style", "Private style"], ["agentic", "Agentic"]];
const LICENSES = [["", "Any license state"], ["free", "Free"], ["required", "License required"], ["licensed", "Licensed"]];

export function mount(root, ctx) {
  const options = (pairs) => pairs.map(([v, label]) => h("option", { value: v }, label));
  const kind = h("select", { id: "filter-kind" }, options(KINDS));
  const model = h("select", { id: "filter-model" }, options([["", "All models"], ...ctx.store.models.map((m) => [m.id, m.id])]));
  const license = h("select", { id: "filter-license" }, options(LICENSES));
  const grid = h("div", { class: "results-grid", id: "gallery-grid" });
  const more = h("button", { type: "button", class: "btn", hidden: true }, "Load more");
  const status = h("div", { "aria-live": "polite", class: "gallery-status" });
  let after = null;
  let generation = 0;

  async function load(reset) {
    const mine = reset ? ++generation : generation;
    if (reset) {
      after = null;
      replace(grid);
    }
    replace(status, h("p", {}, "Loading…"));
    try {
      const page = await ctx.api.assets({ limit: PAGE, after, kind: kind.value, model: model.value, license: license.value });
      if (mine !== generation) return; // a newer filter won
      for (const asset of page.data) {
        grid.append(h("div", { class: "slot" }, imageCard(ctx, cardInfo(asset), { onDerived: () => load(true) })));
      }
      after = page.data.length ? page.data[page.data.length - 1].id : after;
      more.hidden = !page.has_more;
      const shown = grid.children.length;
      replace(status, h("p", {}, shown ? `${shown} image(s)${page.has_more ? ", more to load" : ""}` : "No images match."));
    } catch (error) {
      replace(status, errorView(error));
    }
  }

  for (const control of [kind, model, license]) control.addEventListener("change", () => load(true));
  more.addEventListener("click", () => load(false));
  replace(root,
    h("h1", {}, "Gallery"),
    h("form", { class: "filters", "aria-label": "Gallery filters", onsubmit: (e) => e.preventDefault() },
      field("Kind", kind), field("Model", model), field("License", license)),
    status, grid, more);
  load(true);
}

function cardInfo(asset) {
  return {
    id: asset.id, seed: asset.seed, width: asset.width, height: asset.height, model: asset.model,
    license: asset.license.state, licenseId: asset.license.license_id, watermarked: asset.visible_watermark,
  };
}

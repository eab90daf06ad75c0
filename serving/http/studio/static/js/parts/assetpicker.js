// A modal list of the caller's recent assets to pick from (references, pins).

import { h, replace, uid } from "../dom.js";
import { errorView } from "../errors.js";

/** Resolve to the picked asset objects ([] when cancelled); at most ``max``. */
export function pickAssets(ctx, { title, max = 1, confirm = "Use selected" }) {
  return new Promise((resolve) => {
    const titleId = uid("pick");
    const list = h("div", { class: "picker-grid", role: "group", "aria-labelledby": titleId }, h("p", {}, "Loading your images…"));
    const urls = [];
    const chosen = new Map();
    const status = h("p", { class: "hint", "aria-live": "polite" }, `Pick up to ${max}.`);
    const dialog = h(
      "dialog",
      { class: "asset-picker", "aria-labelledby": titleId },
      h("h2", { id: titleId }, title),
      list,
      status,
      h("div", { class: "actions" },
        h("button", { type: "button", class: "btn btn-primary", onclick: () => finish([...chosen.values()]) }, confirm),
        h("button", { type: "button", class: "btn", onclick: () => finish([]) }, "Cancel")),
    );
    let done = false;
    function finish(result) {
      if (done) return;
      done = true;
      dialog.close();
      dialog.remove();
      urls.forEach((u) => URL.revokeObjectURL(u));
      resolve(result);
    }
    dialog.addEventListener("close", () => finish([]));
    document.body.append(dialog);
    dialog.showModal();
    ctx.api.assets({ limit: 24 }).then(
      (page) => {
        if (!page.data.length) return replace(list, h("p", {}, "No images yet."));
        replace(list, page.data.map((asset) => {
          const img = h("img", { alt: "", width: asset.width, height: asset.height });
          ctx.api.preview(asset.id).then((blob) => {
            const url = URL.createObjectURL(blob);
            urls.push(url);
            img.src = url;
          }, () => {});
          const box = h("input", {
            type: "checkbox",
            "aria-label": `Pick image seed ${asset.seed} (${asset.id})`,
            onchange: () => {
              if (box.checked) chosen.set(asset.id, asset);
              else chosen.delete(asset.id);
              for (const other of list.querySelectorAll("input")) other.disabled = !other.checked && chosen.size >= max;
              status.textContent = `${chosen.size} of up to ${max} picked.`;
            },
          });
          return h("label", { class: "pick" }, box, img);
        }));
      },
      (error) => replace(list, errorView(error)),
    );
  });
}

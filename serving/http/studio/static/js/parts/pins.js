// Character and product pins: pick up to 4 for a generation; create one from 1–4 images
// (files or the gallery).

import { h, readAsDataURL, replace, toast, uid } from "../dom.js";
import { errorView } from "../errors.js";
import { pickAssets } from "./assetpicker.js";

const MAX_PINS = 4;

export function pinsPanel(ctx) {
  const { api, store } = ctx;
  const chosen = new Set();
  let disabledReason = null;
  const list = h("div", { class: "pin-list", role: "group", "aria-label": "Pins to use (up to 4)" });
  const reason = h("p", { class: "hint reason" });
  const status = h("div", { "aria-live": "polite" });
  const name = h("input", { type: "text", id: uid("pin"), maxlength: 200, placeholder: "e.g. Mara" });
  const kind = h("select", { id: uid("pin") }, h("option", { value: "character" }, "Character"), h("option", { value: "product" }, "Product"));
  const files = h("input", { type: "file", id: uid("pin"), accept: "image/png,image/jpeg,image/webp", multiple: true });
  const create = h("button", { type: "button", class: "btn", onclick: () => createPin(false) }, "Create pin from files");
  const fromGallery = h("button", { type: "button", class: "btn", onclick: () => createPin(true) }, "Create pin from gallery");
  const element = h("fieldset", { class: "panel pins" }, h("legend", {}, "Pins"), reason, list,
    h("div", { class: "pin-new" },
      h("div", { class: "field" }, h("label", { for: name.id }, "New pin name"), name),
      h("div", { class: "field" }, h("label", { for: kind.id }, "New pin kind"), kind),
      h("div", { class: "field" }, h("label", { for: files.id }, "New pin images (1–4)"), files),
      h("div", { class: "row" }, create, fromGallery)),
    status);

  function refresh() {
    for (const id of [...chosen]) if (!store.pins.some((p) => p.id === id)) chosen.delete(id);
    if (!store.pins.length) {
      replace(list, h("p", { class: "hint" }, "No pins yet."));
      return;
    }
    replace(list, store.pins.map((pin) => {
      const box = h("input", {
        type: "checkbox", id: uid("usepin"), checked: chosen.has(pin.id), dataset: { pinId: pin.id },
        onchange: () => {
          if (box.checked) chosen.add(pin.id);
          else chosen.delete(pin.id);
          limit();
        },
      });
      return h("label", { for: box.id, class: "pin" }, box, ` Use pin ${pin.name} (${pin.kind})`);
    }));
    limit();
  }

  function limit() {
    for (const box of list.querySelectorAll("input")) {
      box.disabled = Boolean(disabledReason) || (!box.checked && chosen.size >= MAX_PINS);
    }
  }

  async function createPin(gallery) {
    const body = { kind: kind.value, name: name.value.trim() };
    if (!body.name) {
      replace(status, errorView(new Error("Name the pin first.")));
      name.focus();
      return;
    }
    if (gallery) {
      const picked = await pickAssets(ctx, { title: "Pick 1–4 images for the pin", max: MAX_PINS, confirm: "Create pin" });
      if (!picked.length) return;
      body.asset_ids = picked.map((a) => a.id);
    } else {
      const chosenFiles = [...files.files].slice(0, MAX_PINS);
      if (!chosenFiles.length) {
        replace(status, errorView(new Error("Choose 1–4 image files first.")));
        return;
      }
      body.images = await Promise.all(chosenFiles.map(readAsDataURL));
    }
    replace(status, h("p", {}, "Creating the pin…"));
    try {
      const pin = await api.createPin(body);
      chosen.add(pin.id);
      await store.refreshPins();
      await store.refreshCredits();
      replace(status, h("p", {}, `Pin ${pin.name} created from ${pin.images} image(s).`));
      toast(`Pin ${pin.name} created`);
      name.value = "";
      files.value = "";
    } catch (error) {
      replace(status, errorView(error));
    }
  }

  refresh();
  return {
    element,
    refresh,
    selected: () => (disabledReason ? [] : [...chosen]),
    configure({ reason: why }) {
      disabledReason = why;
      reason.textContent = why || "";
      for (const control of element.querySelectorAll(".pin-new input, .pin-new select, .pin-new button")) {
        control.disabled = Boolean(why);
      }
      limit();
    },
  };
}

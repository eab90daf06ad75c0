// Reference images of a generation: dropped, pasted, chosen as a file or picked from the
// gallery; img2img or IP-Adapter mode with a strength. Agentic generations take 1–10.

import { h, readAsDataURL, replace, uid } from "../dom.js";
import { pickAssets } from "./assetpicker.js";

export function referencesPanel(ctx, { onChange }) {
  let items = []; // {dataUrl?, assetId?, url (blob: thumbnail), label}
  let max = 1;
  let disabledReason = null;

  const file = h("input", { type: "file", accept: "image/png,image/jpeg,image/webp", id: uid("ref"), multiple: true });
  // Drop or paste here; from the keyboard, Enter or Space opens the file chooser.
  const drop = h("div", {
    class: "dropzone", tabindex: 0, role: "button",
    "aria-label": "Drop, paste or choose a reference image",
  }, "Drop or paste an image here");
  const thumbs = h("ul", { class: "thumbs", "aria-label": "Reference images" });
  const modeName = uid("mode");
  const img2img = h("input", { type: "radio", name: modeName, value: "img2img", id: uid("r"), checked: true });
  const ipAdapter = h("input", { type: "radio", name: modeName, value: "ip_adapter", id: uid("r") });
  const ipHint = h("small", { class: "hint", id: uid("hint") });
  ipAdapter.setAttribute("aria-describedby", ipHint.id);
  const strength = h("input", { type: "range", min: 0.05, max: 1, step: 0.05, value: "0.6", id: uid("s") });
  const strengthOut = h("output", { for: strength.id }, "0.6");
  const reason = h("p", { class: "hint reason" });
  const galleryButton = h("button", { type: "button", class: "btn", onclick: fromGallery }, "Pick from gallery");
  const modes = h("div", { class: "radios", role: "radiogroup", "aria-label": "Reference mode" },
    h("label", { for: img2img.id }, img2img, " img2img"),
    h("label", { for: ipAdapter.id }, ipAdapter, " IP-Adapter"), ipHint);
  const body = h("div", { class: "panel-body" },
    drop,
    h("div", { class: "row" }, h("label", { for: file.id }, "Reference image file"), file, galleryButton),
    thumbs, modes,
    h("div", { class: "field" }, h("label", { for: strength.id }, "Reference strength"), strength, strengthOut));
  const element = h("fieldset", { class: "panel references" }, h("legend", {}, "Reference images"), reason, body);

  function add(item) {
    if (items.length >= max) {
      const dropped = items.splice(0, items.length - max + 1);
      dropped.forEach((d) => d.url && URL.revokeObjectURL(d.url));
    }
    items.push(item);
    render();
  }

  async function addFiles(files) {
    for (const f of files) {
      if (!f.type.startsWith("image/")) continue;
      add({ dataUrl: await readAsDataURL(f), url: URL.createObjectURL(f), label: f.name || "pasted image" });
    }
  }

  async function fromGallery() {
    const picked = await pickAssets(ctx, { title: "Pick reference images", max: Math.max(1, max) });
    for (const asset of picked) {
      const url = URL.createObjectURL(await ctx.api.preview(asset.id));
      add({ assetId: asset.id, url, label: `asset ${asset.id}` });
    }
  }

  function render() {
    replace(thumbs, items.map((item, i) =>
      h("li", {},
        h("img", { src: item.url, alt: `Reference ${i + 1}: ${item.label}` }),
        h("button", {
          type: "button", class: "btn btn-quiet", "aria-label": `Remove reference ${i + 1}`,
          onclick: () => {
            const [gone] = items.splice(i, 1);
            if (gone.url) URL.revokeObjectURL(gone.url);
            render();
          },
        }, "×"))));
    onChange?.();
  }

  file.addEventListener("change", async () => {
    await addFiles([...file.files]);
    file.value = "";
  });
  drop.addEventListener("keydown", (event) => {
    if ((event.key === "Enter" || event.key === " ") && !disabledReason) {
      event.preventDefault();
      file.click();
    }
  });
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (!disabledReason) addFiles([...event.dataTransfer.files]);
  });
  const onPaste = (event) => {
    const files = [...(event.clipboardData?.files || [])].filter((f) => f.type.startsWith("image/"));
    if (files.length && !disabledReason) {
      event.preventDefault();
      addFiles(files);
    }
  };
  document.addEventListener("paste", onPaste);
  strength.addEventListener("input", () => {
    strengthOut.textContent = strength.value;
  });

  return {
    element,
    items: () => (disabledReason ? [] : items),
    mode: () => (ipAdapter.checked && !ipAdapter.disabled ? "ip_adapter" : "img2img"),
    strength: () => Number(strength.value),
    configure({ reason: why, ipReason, max: limit, agentic }) {
      disabledReason = why;
      max = limit;
      for (const control of body.querySelectorAll("input, button")) control.disabled = Boolean(why);
      drop.setAttribute("aria-disabled", why ? "true" : "false");
      drop.tabIndex = why ? -1 : 0;
      reason.textContent = why || (agentic ? "Agentic: 1–10 references; their style components make the image." : "");
      ipAdapter.disabled = Boolean(why || ipReason);
      ipHint.textContent = ipReason || "";
      img2img.disabled = Boolean(why || agentic);
      strength.disabled = Boolean(why || agentic);
      if (ipAdapter.disabled) img2img.checked = true;
      if (items.length > max) {
        items.splice(0, items.length - max).forEach((d) => d.url && URL.revokeObjectURL(d.url));
        render();
      }
    },
    dispose() {
      document.removeEventListener("paste", onPaste);
      items.forEach((d) => d.url && URL.revokeObjectURL(d.url));
    },
  };
}

// One image with what can be done to it: reuse its seed, upscale, remove the background,
// download (PNG, JPEG, WebP, SVG; long side up to 7680), buy its license and view the
// certificate, delete. Used by the results grid and the gallery.

import { h, replace, saveBlob, toast, uid } from "../dom.js";
import { errorView } from "../errors.js";

export const MAX_LONG_SIDE = 7680;
const FORMATS = [
  ["png", "PNG"],
  ["jpeg", "JPEG"],
  ["webp", "WebP"],
  ["svg", "SVG"],
];
const EXTENSIONS = { png: "png", jpeg: "jpg", webp: "webp", svg: "svg" };

/** The fields a card needs, from a generation's image or an asset object. */
export function imageInfo(item) {
  if (item.object === "asset") {
    return {
      id: item.id, seed: item.seed, width: item.width, height: item.height, model: item.model,
      style: item.style, kind: item.kind, prompt: item.prompt,
      license: item.license.state, licenseId: item.license.license_id, watermarked: item.visible_watermark,
    };
  }
  return {
    id: item.asset_id, seed: item.seed, width: item.width, height: item.height,
    license: item.license ?? "free", licenseId: null, watermarked: Boolean(item.watermarked),
  };
}

/**
 * A card for ``info`` showing ``blob`` (or fetching the preview). Callbacks: onSeed(seed),
 * onDerived(assetObject) for upscales and cut-outs, onDeleted(id).
 */
export function imageCard(ctx, info, { blob, onSeed, onDerived, onDeleted } = {}) {
  const { api, store } = ctx;
  const img = h("img", { alt: `Image ${info.id}, seed ${info.seed}`, width: info.width, height: info.height });
  const status = h("div", { class: "card-status", "aria-live": "polite" });
  const card = h("article", { class: "image-card", dataset: { assetId: info.id, seed: String(info.seed) }, "aria-label": `Image seed ${info.seed}` });
  let objectUrl = null;

  const show = (data) => {
    if (objectUrl) URL.revokeObjectURL(objectUrl);
    objectUrl = URL.createObjectURL(data);
    img.src = objectUrl;
  };
  const fail = (error) => replace(status, errorView(error, { onLicense: buy, licensePrice: store.prices.license }));
  const busy = async (label, work) => {
    replace(status, h("p", { class: "working" }, `${label}…`));
    card.setAttribute("aria-busy", "true");
    try {
      await work();
    } catch (error) {
      fail(error);
    } finally {
      card.removeAttribute("aria-busy");
    }
  };

  async function buy() {
    await busy("Buying the license", async () => {
      const certificate = await api.buyLicense(info.id);
      info.license = "licensed";
      info.licenseId = certificate.id;
      await store.refreshCredits();
      // The original, unwatermarked, replaces the preview.
      show(await api.blob(`/v1/assets/${encodeURIComponent(info.id)}/original`));
      renderLicense();
      replace(status, h("p", {}, `Licensed: ${certificate.credits_charged} credits charged.`));
    });
  }

  async function certificate() {
    await busy("Loading the certificate", async () => {
      const cert = await api.license(info.licenseId);
      const titleId = uid("cert");
      const dialog = h(
        "dialog",
        { class: "certificate", "aria-labelledby": titleId },
        h("h2", { id: titleId }, "License certificate"),
        h("dl", {},
          h("dt", {}, "License"), h("dd", {}, cert.id),
          h("dt", {}, "Asset"), h("dd", {}, cert.asset_id),
          h("dt", {}, "SHA-256 of the original"), h("dd", { class: "mono" }, cert.asset_sha256),
          h("dt", {}, "Licensee"), h("dd", {}, cert.tenant_name),
          h("dt", {}, "Issued"), h("dd", {}, cert.issued),
          h("dt", {}, "Scope"), h("dd", {}, cert.scope),
          h("dt", {}, "Price"), h("dd", {}, `${cert.price} credits`)),
        h("ul", { class: "rights" }, cert.rights.map((r) => h("li", {}, r))),
        h("button", { type: "button", class: "btn", onclick: () => dialog.close() }, "Close"),
      );
      dialog.addEventListener("close", () => dialog.remove());
      document.body.append(dialog);
      dialog.showModal();
      replace(status);
    });
  }

  const format = h("select", { "aria-label": "Download format" }, FORMATS.map(([v, label]) => h("option", { value: v }, label)));
  const longSide = h("input", {
    type: "number", min: 1, max: MAX_LONG_SIDE, step: 1, placeholder: String(Math.max(info.width, info.height)),
    "aria-label": `Long side in pixels (up to ${MAX_LONG_SIDE})`, class: "long-side",
  });
  const download = () =>
    busy("Preparing the download", async () => {
      const side = longSide.value ? Number(longSide.value) : null;
      const data = await api.download(info.id, { format: format.value, long_side: side });
      saveBlob(data, `${info.id}${side ? `-${side}` : ""}.${EXTENSIONS[format.value]}`);
      await store.refreshCredits();
      replace(status, h("p", {}, `Downloaded ${format.value.toUpperCase()}.`));
    });
  const upscale = () =>
    busy("Upscaling", async () => {
      const answer = await api.upscale(info.id, { scale: 2 });
      await store.refreshCredits();
      if (answer.asset) onDerived?.(answer.asset);
      replace(status, h("p", {}, answer.asset ? `Upscaled: ${answer.credits_charged} credits.` : `Upscale job ${answer.id} started.`));
    });
  const removeBackground = () =>
    busy("Removing the background", async () => {
      const answer = await api.removeBackground(info.id);
      await store.refreshCredits();
      onDerived?.(answer.asset);
      replace(status, h("p", {}, `Background removed: ${answer.credits_charged} credits.`));
    });
  const remove = () =>
    busy("Deleting", async () => {
      await api.deleteAsset(info.id);
      if (objectUrl) URL.revokeObjectURL(objectUrl);
      card.remove();
      toast(`Deleted ${info.id}`);
      onDeleted?.(info.id);
    });

  const licenseBox = h("div", { class: "license" });
  function renderLicense() {
    const parts = [];
    if (info.license === "required") {
      const price = store.prices.license;
      parts.push(
        h("p", { class: "watermark-note" },
          "Watermarked preview: this is a style image. Its license unlocks the original without the mark, " +
          "8K downloads, SVG and background removal."),
        h("button", { type: "button", class: "btn", onclick: buy }, `Buy license (${price} credits)`),
      );
    } else if (info.license === "licensed") {
      parts.push(h("button", { type: "button", class: "btn", onclick: certificate }, "View certificate"));
    }
    replace(licenseBox, parts);
  }
  renderLicense();

  replace(
    card,
    h("div", { class: "frame" }, img),
    h("p", { class: "meta" }, `Seed ${info.seed} · ${info.width}×${info.height}` + (info.model ? ` · ${info.model}` : "")),
    licenseBox,
    h("div", { class: "actions" },
      onSeed ? h("button", { type: "button", class: "btn", onclick: () => onSeed(info.seed) }, "Reuse seed") : null,
      h("button", { type: "button", class: "btn", onclick: upscale }, "Upscale ×2"),
      h("button", { type: "button", class: "btn", onclick: removeBackground }, "Remove background"),
      h("button", { type: "button", class: "btn btn-danger", onclick: remove }, "Delete")),
    h("div", { class: "download" }, format, longSide, h("button", { type: "button", class: "btn", onclick: download }, "Download")),
    status,
  );
  if (blob) show(blob);
  else api.preview(info.id).then(show, fail);
  return card;
}

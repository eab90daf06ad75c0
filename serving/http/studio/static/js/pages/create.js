// The prompt bar and its results: pick a model (grouped by kind), see exactly its
// features, settings with the model's defaults, cost × n against the balance; add
// references, image-to-prompt, pins and a style; generate (button or Ctrl/Cmd+Enter);
// results fill the grid as they arrive.

import { b64ToBlob, field, h, replace, toast, uid } from "../dom.js";
import { errorView } from "../errors.js";
import { GROUPS, controls, cost, entries, featureName, termsLine } from "../parts/catalog.js";
import { imageCard } from "../parts/imagecard.js";
import { referencesPanel } from "../parts/references.js";
import { pinsPanel } from "../parts/pins.js";

const MAX_IMAGES = 12;
// A step preview every this many denoising steps (a few per image on real models).
const PREVIEW_EVERY = 5;
const EXTRACTS = ["everything", "appearance", "outfit", "pose", "colour_grading", "composition", "environment"];

export function mount(root, ctx) {
  const { api, store } = ctx;
  const all = entries(store);
  let entry = all[0];

  // Controls
  const picker = h("select", { id: "model", name: "model" },
    GROUPS.map((g) => {
      const items = all.filter((e) => e.group === g.kind);
      const group = h("optgroup", { label: g.label });
      if (!items.length) group.append(h("option", { disabled: true, value: "" }, `No ${g.label.toLowerCase()}`));
      for (const e of items) group.append(h("option", { value: e.value }, e.label));
      return group;
    }));
  const prompt = h("textarea", { id: "prompt", name: "prompt", rows: 2, placeholder: "Describe the image…" });
  const negative = h("textarea", { id: "negative", name: "negative", rows: 1, placeholder: "What to avoid" });
  const resolution = h("select", { id: "resolution" });
  const aspect = h("select", { id: "aspect" });
  const count = h("input", { id: "count", type: "number", min: 1, max: MAX_IMAGES, step: 1, value: "1", inputmode: "numeric" });
  const seed = h("input", { id: "seed", type: "number", min: 0, step: 1, placeholder: "random" });
  const steps = h("input", { id: "steps", type: "number", min: 1, max: 200, step: 1 });
  const guidance = h("input", { id: "guidance", type: "number", min: 0, step: 0.5 });
  const scheduler = h("select", { id: "scheduler" });
  const styleStrength = h("input", { id: "style-strength", type: "number", min: 0, max: 2, step: 0.05 });
  const generateButton = h("button", { type: "submit", id: "generate", class: "btn btn-primary" }, "Generate");
  const costLine = h("p", { id: "cost", class: "cost", "aria-live": "polite" });
  const features = h("p", { id: "features", class: "features" });
  const terms = h("p", { id: "terms", class: "terms" });
  const unavailable = h("ul", { id: "unavailable", class: "unavailable", "aria-label": "Not available with this model" });
  const formStatus = h("div", { class: "form-status", "aria-live": "polite" });
  const hints = {};
  const withHint = (label, control, key) => {
    const wrapped = field(label, control, " ");
    hints[key] = wrapped.querySelector(".hint");
    return wrapped;
  };

  const references = referencesPanel(ctx, { onChange: () => update() });
  const pins = pinsPanel(ctx);

  const extract = h("select", { id: "i2p-extract" }, EXTRACTS.map((x) => h("option", { value: x }, x.replaceAll("_", " "))));
  const methodName = uid("method");
  const precise = h("input", { type: "radio", name: methodName, value: "precise", id: uid("m"), checked: true });
  const creative = h("input", { type: "radio", name: methodName, value: "creative", id: uid("m") });
  const describeButton = h("button", { type: "button", class: "btn", onclick: describe }, "Describe reference into prompt");
  const i2pReason = h("small", { class: "hint", id: uid("hint") });
  describeButton.setAttribute("aria-describedby", i2pReason.id);
  const i2pStatus = h("div", { "aria-live": "polite" });
  const imageToPrompt = h("fieldset", { class: "panel" },
    h("legend", {}, "Image to prompt"),
    field("Extract", extract),
    h("div", { class: "radios", role: "radiogroup", "aria-label": "Wording" },
      h("label", { for: precise.id }, precise, " Precise"),
      h("label", { for: creative.id }, creative, " Creative")),
    describeButton, i2pReason, i2pStatus);

  const results = h("div", { id: "results", class: "results-list" });
  const form = h("form", { class: "promptbar", "aria-label": "Prompt bar", novalidate: true },
    h("div", { class: "bar-main" },
      h("div", { class: "field field-model" }, h("label", { for: "model" }, "Model"), picker),
      h("div", { class: "field field-prompt" }, h("label", { for: "prompt" }, "Prompt"), prompt),
      h("div", { class: "go" }, generateButton, costLine)),
    h("div", { class: "bar-settings" },
      field("Resolution", resolution),
      field("Aspect ratio", aspect),
      field("Images (1–12)", count),
      withHint("Negative prompt", negative, "negative")),
    h("div", { class: "bar-info" }, features, terms, unavailable),
    h("details", { class: "drawer", id: "advanced" },
      h("summary", {}, "Advanced settings"),
      h("div", { class: "drawer-body" },
        withHint("Seed", seed, "seed"),
        withHint("Steps", steps, "steps"),
        withHint("Guidance", guidance, "guidance"),
        withHint("Scheduler", scheduler, "scheduler"),
        withHint("Style strength", styleStrength, "styleStrength"))),
    h("details", { class: "drawer", id: "additions" },
      h("summary", {}, "References, image to prompt, pins"),
      h("div", { class: "drawer-body additions" }, references.element, imageToPrompt, pins.element)),
    formStatus);

  replace(root,
    h("h1", { class: "visually-hidden" }, "Create"),
    form,
    h("section", { class: "results", "aria-labelledby": "results-title" },
      h("h2", { id: "results-title" }, "Results"), results));

  // Behaviour

  function fillModelSettings() {
    const m = entry.model;
    const keep = (select, values, fallback) => {
      const old = select.value;
      replace(select, values.map(([v, label]) => h("option", { value: v }, label)));
      select.value = values.some(([v]) => v === old) ? old : fallback;
    };
    keep(resolution, Object.entries(m.resolutions).map(([name, px]) => [name, `${name} (${px} px)`]), m.defaults.resolution);
    keep(aspect, m.aspect_ratios.map((a) => [a, a]), m.defaults.aspect_ratio);
    keep(scheduler, [["", `Default (${m.defaults.scheduler})`], ...m.schedulers.map((s) => [s, s])], "");
    steps.placeholder = String(m.defaults.steps);
    guidance.placeholder = String(m.defaults.guidance);
    styleStrength.placeholder = entry.style ? String(entry.style.default_strength) : "";
    hints.steps.textContent = `Default: ${m.defaults.steps}`;
    hints.guidance.textContent = `Default: ${m.defaults.guidance} (${m.guidance_kind})`;
    hints.scheduler.textContent = `Default: ${m.defaults.scheduler}`;
    hints.seed.textContent = "Empty: a random seed; image i uses seed + i";
  }

  function update() {
    const off = controls(entry);
    const set = (control, reason, key) => {
      control.disabled = Boolean(reason);
      if (key && reason) hints[key].textContent = reason;
    };
    set(negative, off.negative, "negative");
    if (!off.negative) hints.negative.textContent = "";
    set(guidance, off.guidance, "guidance");
    set(scheduler, off.scheduler, "scheduler");
    set(styleStrength, off.styleStrength, "styleStrength");
    if (!off.styleStrength) hints.styleStrength.textContent = `Default: ${entry.style.default_strength}`;
    if (!off.guidance) hints.guidance.textContent = `Default: ${entry.model.defaults.guidance} (${entry.model.guidance_kind})`;
    if (!off.scheduler) hints.scheduler.textContent = `Default: ${entry.model.defaults.scheduler}`;
    references.configure({ reason: off.reference, ipReason: off.ipAdapter, max: entry.agentic ? 10 : 1, agentic: Boolean(entry.agentic) });
    pins.configure({ reason: off.pins });
    const noRef = references.items().length ? null : "add a reference image first";
    describeButton.disabled = Boolean(off.imageToPrompt || noRef);
    i2pReason.textContent = off.imageToPrompt || noRef || "";
    extract.disabled = Boolean(off.imageToPrompt);

    const label = entry.agentic ? "agentic" : entry.style ? `${entry.style.kind} style` : "base model";
    replace(features, h("strong", {}, `${entry.model.id} (${label}): `),
      entry.model.features.filter((f) => f !== "agentic" || entry.agentic).map(featureName).join(", "));
    terms.textContent = termsLine(entry.model) + (entry.style ? " · style images are watermarked until licensed" : "");
    replace(unavailable, Object.entries(off).filter(([, reason]) => reason).map(([, reason]) => h("li", {}, reason)));
    updateCost();
  }

  function images() {
    const n = Number(count.value);
    return Number.isInteger(n) && n >= 1 && n <= MAX_IMAGES ? n : null;
  }

  function updateCost() {
    const n = images();
    const balance = store.credits.balance;
    if (n === null) {
      costLine.textContent = `Images must be a whole number from 1 to ${MAX_IMAGES}`;
      generateButton.disabled = true;
      return;
    }
    const price = cost(entry, resolution.value, n, store.prices);
    costLine.textContent = `Cost: ${price.text} · Balance: ${balance}`;
    costLine.classList.toggle("short", price.total > balance);
    generateButton.disabled = false;
  }

  function select(value) {
    entry = all.find((e) => e.value === value) || all[0];
    picker.value = entry.value;
    fillModelSettings();
    update();
  }

  function number(input) {
    return input.value === "" || input.disabled ? undefined : Number(input.value);
  }

  function requestBody() {
    const n = images();
    const body = {
      prompt: prompt.value,
      n,
      resolution: resolution.value,
      aspect_ratio: aspect.value,
      seed: number(seed),
      steps: number(steps),
      guidance: number(guidance),
    };
    if (!negative.disabled && negative.value.trim()) body.negative_prompt = negative.value;
    const refs = references.items();
    if (entry.agentic) {
      body.model = entry.model.id;
      body.references = refs.map((r) => (r.assetId ? { asset_id: r.assetId } : { image: r.dataUrl }));
      return ["/v1/agentic/generations", body];
    }
    body.model = entry.model.id;
    if (scheduler.value) body.scheduler = scheduler.value;
    if (entry.style) {
      body.style = entry.style.id;
      body.style_strength = number(styleStrength);
    }
    if (refs.length) {
      const r = refs[0];
      const mode = references.mode();
      body.reference = { ...(r.assetId ? { asset_id: r.assetId } : { image: r.dataUrl }), mode };
      body.reference[mode === "img2img" ? "strength" : "scale"] = references.strength();
    }
    const chosen = pins.selected();
    if (chosen.length) body.pins = chosen;
    // Step previews come with a job's events only: ask for them when generating as a job.
    if (api.asyncJobs) body.preview_every = PREVIEW_EVERY;
    return ["/v1/generations", body];
  }

  async function generate() {
    if (generateButton.disabled) return;
    if (entry.agentic && !references.items().length) {
      replace(formStatus, errorView(new Error("An agentic generation needs 1–10 reference images.")));
      return;
    }
    replace(formStatus);
    const [path, body] = requestBody();
    const n = body.n;
    const slots = Array.from({ length: n }, (_, i) => h("div", { class: "slot", "aria-busy": "true" }, h("p", {}, `Image ${i + 1}: waiting…`)));
    const batchStatus = h("div", { class: "batch-status", "aria-live": "polite" });
    const batch = h("section", { class: "batch", "aria-label": `Generation: ${body.prompt || "(no prompt)"}` },
      h("p", { class: "batch-prompt" }, h("strong", {}, entry.label), " · ", body.prompt || "(no prompt)"),
      batchStatus, h("div", { class: "grid" }, slots));
    results.prepend(batch);
    generateButton.disabled = true;
    generateButton.textContent = "Generating…";
    try {
      const answer = await api.generate(path, body, { onEvent: (event) => onEvent(event, slots, batchStatus) });
      answer.data.forEach((image, i) => fillSlot(slots[i], image));
      slots.slice(answer.data.length).forEach((s) => s.remove());
      replace(batchStatus, h("p", {}, `${answer.data.length} image(s) · ${answer.credits_charged} credits charged`));
    } catch (error) {
      slots.forEach((s) => s.remove());
      replace(batchStatus, errorView(error));
    } finally {
      generateButton.textContent = "Generate";
      updateCost();
      store.refreshCredits().catch(() => {});
    }
  }

  // A job's events: progress (step, total, eta_s), its place in the model's queue
  // (queue_position, images_ahead) and step previews (event "preview": image index, WebP).
  function onEvent(event, slots, batchStatus) {
    const data = event.data || {};
    if (event.type === "progress" && data.queue_position !== undefined && data.step === undefined) {
      const eta = data.eta_s ? ` · about ${Math.ceil(data.eta_s)} s` : "";
      replace(batchStatus, h("p", {}, `Queued: ${data.queue_position} request(s), ${data.images_ahead ?? 0} image(s) ahead${eta}`));
    } else if (event.type === "progress" && data.total) {
      const eta = data.eta_s !== undefined && data.eta_s !== null ? ` · about ${Math.ceil(data.eta_s)} s left` : "";
      replace(batchStatus, h("p", {}, `Step ${data.step} of ${data.total}${eta}`));
      slots.forEach((slot, i) => {
        if (!slot.dataset.filled && !slot.querySelector("img")) replace(slot, h("p", {}, `Image ${i + 1}: step ${data.step} of ${data.total}`));
      });
    } else if (event.type === "preview" && data.webp && slots[data.image] && !slots[data.image].dataset.filled) {
      const slot = slots[data.image];
      const old = slot.querySelector("img")?.src;
      const url = URL.createObjectURL(b64ToBlob(data.webp, "image/webp"));
      replace(slot, h("img", { src: url, alt: `Image ${data.image + 1}, step ${data.step} of ${data.total}`, class: "step-preview" }));
      if (old) URL.revokeObjectURL(old);
    }
  }

  function fillSlot(slot, image) {
    if (!slot || slot.dataset.filled) return;
    slot.dataset.filled = "1";
    slot.removeAttribute("aria-busy");
    const info = {
      id: image.asset_id, seed: image.seed, width: image.width, height: image.height,
      license: image.license ?? "free", licenseId: null, watermarked: Boolean(image.watermarked),
    };
    replace(slot, cardFor(info, b64ToBlob(image.b64_json)));
  }

  function cardFor(info, blob) {
    return imageCard(ctx, info, {
      blob,
      onSeed: (s) => {
        seed.value = String(s);
        form.querySelector("#advanced").open = true;
        toast(`Seed ${s} set`);
        seed.focus();
      },
      onDerived: (asset) => {
        const derived = h("div", { class: "slot" });
        const grid = results.querySelector(".batch .grid");
        (grid || results).prepend(derived);
        replace(derived, cardFor({
          id: asset.id, seed: asset.seed, width: asset.width, height: asset.height, model: asset.model,
          license: asset.license.state, licenseId: asset.license.license_id, watermarked: asset.visible_watermark,
        }));
      },
    });
  }

  async function describe() {
    const ref = references.items()[0];
    if (!ref) return;
    const body = { extract: extract.value, method: creative.checked ? "creative" : "precise" };
    if (ref.assetId) body.asset_id = ref.assetId;
    else body.image = ref.dataUrl;
    replace(i2pStatus, h("p", {}, "Describing…"));
    try {
      const answer = await api.imageToPrompt(body);
      const before = prompt.value.trim();
      prompt.value = before ? `${before}, ${answer.prompt}` : answer.prompt;
      replace(i2pStatus, h("p", {}, `Added to the prompt (${answer.credits_charged} credit${answer.credits_charged === 1 ? "" : "s"}); edit it freely.`));
      store.refreshCredits().catch(() => {});
      prompt.focus();
    } catch (error) {
      replace(i2pStatus, errorView(error));
    }
  }

  picker.addEventListener("change", () => select(picker.value));
  for (const input of [resolution, count]) input.addEventListener("input", updateCost);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    generate();
  });
  form.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      generate();
    }
  });
  const unsubscribe = store.subscribe(() => {
    updateCost();
    pins.refresh();
  });
  select(all[0]?.value);
  prompt.focus();
  return () => {
    unsubscribe();
    references.dispose();
  };
}

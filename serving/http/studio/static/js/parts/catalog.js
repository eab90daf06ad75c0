// The prompt bar's view of the catalog: picker entries grouped by kind, and for the
// chosen entry which controls it has (and why the others are off) and what it costs.

export const GROUPS = [
  { kind: "base", label: "Base models" },
  { kind: "artist", label: "Artist styles" },
  { kind: "private", label: "Private styles" },
  { kind: "agentic", label: "Agentic" },
];

const FEATURE_NAMES = {
  text_to_image: "text to image",
  reference: "reference image (img2img)",
  reference_ip_adapter: "IP-Adapter reference",
  pins: "character/product pins",
  styles: "styles",
  image_to_prompt: "image to prompt",
  agentic: "agentic",
  instruct: "instruct edit",
  replace: "replace",
  recreate: "recreate",
  erase: "erase",
  variations: "variations",
  structure_guidance: "structure guidance",
};

export function featureName(feature) {
  return FEATURE_NAMES[feature] || feature.replaceAll("_", " ");
}

/** Picker entries: {value, group, label, model, style}. Text-to-image models only (edit
 *  models belong to the editor); a style runs on its base model; agentic on models that
 *  offer it. */
export function entries(store) {
  const out = [];
  for (const model of store.models) {
    if (model.features.includes("text_to_image") && model.kind === "base") {
      out.push({ value: `model:${model.id}`, group: "base", label: `${model.id} (${model.family})`, model });
    }
  }
  for (const style of store.styles) {
    const model = store.model(style.base_model);
    if (!model) continue;
    const group = style.kind === "artist" ? "artist" : "private";
    out.push({ value: `style:${style.id}`, group, label: `${style.name} · on ${model.id}`, model, style });
  }
  for (const model of store.models) {
    if (model.features.includes("agentic")) {
      out.push({ value: `agentic:${model.id}`, group: "agentic", label: `Agentic on ${model.id}`, model, agentic: true });
    }
  }
  return out;
}

/** Which controls the entry has: {name: null (available) | "reason it is off"}. */
export function controls(entry) {
  const { model } = entry;
  const has = (feature) => model.features.includes(feature);
  const lacks = (feature) => `${model.id} does not offer ${featureName(feature)}`;
  const agentic = entry.agentic ? "agentic generations take their own references only" : null;
  return {
    negative: model.guidance_kind === "cfg" ? null : `${model.id} has no classifier-free guidance, so no negative prompt`,
    guidance: model.guidance_kind === "none" ? `${model.id} takes no guidance value` : null,
    scheduler: entry.agentic ? "agentic generations choose their own scheduler" : null,
    styleStrength: entry.style ? null : "pick a style in the model picker to set its strength",
    reference: entry.agentic ? null : has("reference") ? null : lacks("reference"),
    ipAdapter: entry.agentic ? agentic : has("reference_ip_adapter") ? null : lacks("reference_ip_adapter"),
    pins: agentic || (has("pins") ? null : lacks("pins")),
    imageToPrompt: has("image_to_prompt") ? null : lacks("image_to_prompt"),
  };
}

/** Credits before generating: the model's price at the resolution × images, or the
 *  flat agentic price per generation. */
export function cost(entry, resolution, n, prices) {
  if (entry.agentic) {
    const flat = prices.agentic ?? 0;
    return { total: flat, text: `${flat} credits (flat per agentic generation)` };
  }
  const unit = entry.model.prices[resolution] ?? 0;
  return { total: unit * n, text: `${unit * n} credits (${unit} × ${n})` };
}

/** The provider's terms of a model, as one line. */
export function termsLine(model) {
  const t = model.terms;
  const outputs = t.commercial_outputs ? "commercial use of images allowed" : "no commercial use of images";
  return `Provider terms: ${t.license_id} · ${outputs}`;
}

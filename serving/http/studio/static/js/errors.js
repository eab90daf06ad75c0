// API errors shown from the server's error object: its message, and what a person can
// do next (402: credits needed and available; 403 license_required: buy the license).

import { h } from "./dom.js";

/** An alert for ``error`` (an ApiError or any Error); ``onLicense`` offers the license. */
export function errorView(error, { onLicense, licensePrice } = {}) {
  const parts = [h("strong", {}, error.status ? `Error ${error.status}` : "Error"), " ", error.message];
  if (error.status === 402 && error.needed !== null) {
    parts.push(
      h("span", { class: "error-detail" }, `Needed: ${error.needed} credits · available: ${error.available} credits`),
    );
  }
  if (error.param) parts.push(h("span", { class: "error-detail" }, `Field: ${error.param}`));
  if (error.code === "license_required" && onLicense) {
    const price = licensePrice !== undefined ? ` (${licensePrice} credits)` : "";
    parts.push(h("button", { type: "button", class: "btn", onclick: onLicense }, `Buy license${price}`));
  }
  return h("div", { class: "error", role: "alert", dataset: { code: error.code || "" } }, parts);
}

// DOM helpers. Text is only ever set as text (Node.append of a string, textContent):
// nothing a user or the API wrote is parsed as HTML anywhere in the Studio.

const PROPS = new Set(["value", "checked", "disabled", "selected", "indeterminate"]);

/** An element: attributes (on* = listeners, class, dataset), then children. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  const props = [];
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (PROPS.has(key)) props.push([key, value]);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  // After the children: a <select>'s value needs its options first.
  for (const [key, value] of props) el[key] = value;
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace every child of ``el``. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let ids = 0;
/** A page-unique id for label/aria wiring. */
export function uid(prefix = "k") {
  ids += 1;
  return `${prefix}-${ids}`;
}

/** A labelled form field: label, control, optional hint (aria-describedby). */
export function field(label, control, hint) {
  if (!control.id) control.id = uid("f");
  const parts = [h("label", { for: control.id }, label), control];
  if (hint) {
    const hintEl = h("small", { id: uid("hint"), class: "hint" }, hint);
    control.setAttribute("aria-describedby", hintEl.id);
    parts.push(hintEl);
  }
  return h("div", { class: "field" }, parts);
}

/** A short-lived message in the live region. */
export function toast(text, kind = "info") {
  const box = document.getElementById("toasts");
  const item = h("p", { class: `toast toast-${kind}` }, text);
  box.append(item);
  setTimeout(() => item.remove(), 6000);
}

/** Read a File/Blob as a data: URL (the API takes base64 or data: URLs). */
export function readAsDataURL(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

/** Decode base64 into a Blob (results arrive as b64_json; shown through blob: URLs). */
export function b64ToBlob(b64, type = "image/png") {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i += 1) bytes[i] = bin.charCodeAt(i);
  return new Blob([bytes], { type });
}

/** Save a Blob as a file through a blob: URL (an <a href> to the API cannot send the key). */
export function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: filename, class: "visually-hidden" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 30000);
}

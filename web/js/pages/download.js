/** Download: a bundle of the images with the chosen labels, its progress, then its link. */
import { h, render, formatBytes, pause } from "../dom.js";
import { labelText } from "./library.js";

const DONE = new Set(["ready", "empty", "error"]);

export async function show({ main, api, config, signal }) {
  const boxes = h("div", { id: "bundle-labels" }, h("p", { class: "muted" }, "Loading labels…"));
  const anyAll = h("fieldset", {}, h("legend", {}, "Images that have"),
    h("label", { class: "inline" }, h("input", { type: "radio", name: "match", value: "any", checked: true }), "any of the labels"),
    h("label", { class: "inline" }, h("input", { type: "radio", name: "match", value: "all" }), "all of the labels"));
  const notify = h("input", { type: "text", id: "notify", autocomplete: "email", "aria-describedby": "notify-help" });
  const error = h("p", { class: "error", role: "alert", id: "bundle-error" });
  const progress = h("section", { id: "bundle-status", "aria-live": "polite" });
  const submit = h("button", { type: "submit", class: "primary" }, "Request the bundle");
  const form = h("form", {},
    h("fieldset", {}, h("legend", {}, "Labels"), boxes), anyAll,
    h("label", { for: "notify" }, "Email or phone for a notification (optional)"), notify,
    h("p", { id: "notify-help", class: "muted" }, "Used only to tell you the bundle is ready."),
    h("div", { class: "row" }, submit), error);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const labels = [...boxes.querySelectorAll("input:checked")].map((box) => box.value);
    if (!labels.length) {
      error.textContent = "Choose at least one label.";
      return;
    }
    const request = { labels, match: form.querySelector("input[name=match]:checked").value };
    if (notify.value.trim()) request.notify = notify.value.trim();
    submit.disabled = true;
    try {
      const created = await api.createBundle(request);
      await follow(created.bundle_id);
    } catch (failure) {
      error.textContent = failure.message;
    } finally {
      submit.disabled = false;
    }
  });

  async function follow(id) {
    progress.replaceChildren(h("h2", {}, "Your bundle"), h("p", { id: "bundle-state" }, "Requested; waiting for the bundle to be built…"));
    while (!signal.aborted) {
      const status = await api.getBundle(id);
      if (DONE.has(status.status)) {
        progress.replaceChildren(h("h2", {}, "Your bundle"), ...describe(status), ...notice(status));
        return;
      }
      progress.querySelector("#bundle-state").textContent = status.status === "restoring" && status.restore
        ? `Restoring archived images: ${status.restore.restored} of ${status.restore.images} ready…`
        : `Status: ${status.status}…`;
      await pause(config.poll_seconds * 1000, signal);
    }
  }

  render(main, h("h1", {}, "Download"), form, progress);
  try {
    const { labels } = await api.listLabels();
    boxes.replaceChildren(...(labels.length
      ? labels.map((entry, index) => h("label", { class: "inline" },
        h("input", { type: "checkbox", value: entry.label, id: `bundle-label-${index}` }), labelText(entry)))
      : [h("p", {}, "No labels yet: upload photos first.")]));
  } catch (failure) {
    boxes.replaceChildren(h("p", { class: "error" }, `Labels could not be loaded: ${failure.message}`));
  }
}

/** An email recipient gets the link only after confirming SNS's subscription email. */
function notice(status) {
  if (status.notification === "email" && status.status !== "error") {
    return [h("p", { id: "bundle-notice", class: "muted" },
      "We also email you the link once you confirm the \"AWS Notification - Subscription Confirmation\" email.")];
  }
  if (status.notification === "sms" && status.status !== "error") {
    return [h("p", { id: "bundle-notice", class: "muted" }, "We also text you the link.")];
  }
  return [];
}

function describe(status) {
  if (status.status === "ready") {
    return [
      h("p", { id: "bundle-state", class: "ok" }, `Ready: ${status.image_count} images, ${formatBytes(status.bytes)}.`),
      h("p", {}, h("a", { href: status.url, id: "bundle-link" }, "Download the bundle (zip)")),
      status.expires_at ? h("p", { class: "muted" }, `The link works until ${status.expires_at}.`) : null,
    ];
  }
  if (status.status === "empty") return [h("p", { id: "bundle-state" }, "No image has those labels: nothing to bundle.")];
  return [h("p", { id: "bundle-state", class: "error" }, "The bundle could not be built."),
    ...(status.errors || []).map((e) => h("p", { class: "error" }, e.message || e.code))];
}

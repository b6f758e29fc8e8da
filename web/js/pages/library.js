/**
 * Library: labels with their exact counts (polled, so they grow while analysis runs), a grid
 * of thumbnails a page at a time filtered by a label, an image's details, and deletion for
 * administrators. The API filters images by one label, so the filter is one choice.
 */
import { h, render, announce, formatBytes, pause } from "../dom.js";

const PAGE = 24;
const DETAIL_CONCURRENCY = 4;

export function labelText(entry) { return `${entry.label} (${entry.count})`; }

/** "97.1% confident"; images labelled before confidences were kept have none. */
export function confidenceText(confidence) {
  return confidence === null || confidence === undefined ? "confidence not recorded" : `${confidence.toFixed(1)}% confident`;
}

function pixels(size) {
  return size.width && size.height ? `${size.width} × ${size.height} px` : null;
}

function thumbnailRow(size, thumbnail) {
  return h("tr", { "data-size": size },
    h("th", { scope: "row" }, `${size} px`),
    h("td", { class: "pixels" }, pixels(thumbnail) ?? "not recorded"),
    h("td", { class: "bytes" }, thumbnail.bytes === null ? "not recorded" : formatBytes(thumbnail.bytes)),
    h("td", {}, h("a", { href: thumbnail.url }, `Open the ${size} px thumbnail`)));
}

export function show({ main, api, auth, config, signal }) {
  let selected = "";
  let cursor = null;
  let generation = 0;
  const labelList = h("ul", { class: "labels", id: "labels" });
  const labelBox = h("fieldset", {}, h("legend", {}, "Labels"), labelList);
  const grid = h("ul", { class: "grid", id: "grid", "aria-label": "Images" });
  const more = h("button", { type: "button", id: "more", hidden: true, onclick: () => loadPage(false) }, "Load more images");
  const summary = h("p", { class: "muted", id: "grid-summary", role: "status" });
  const detail = h("section", { class: "detail", id: "detail", hidden: true, "aria-labelledby": "detail-title" });

  const radio = (value, text) => {
    const id = `label-${value || "all"}`.replace(/[^A-Za-z0-9_-]/g, "_");
    const input = h("input", { type: "radio", name: "label", id, value, checked: value === selected,
      onchange: () => { selected = value; loadPage(true); } });
    return h("li", { "data-label": value }, h("label", { class: "inline", for: id }, input, text));
  };

  const showLabels = (labels) => {
    const focused = document.activeElement?.id;
    labelList.replaceChildren(radio("", "All images"), ...labels.map((entry) => radio(entry.label, labelText(entry))));
    if (focused) document.getElementById(focused)?.focus();
  };

  const pollLabels = async () => {
    while (!signal.aborted) {
      try {
        showLabels((await api.listLabels()).labels);
      } catch (error) {
        announce(`Labels: ${error.message}`);
      }
      await pause(config.poll_seconds * 1000 * 2, signal);
    }
  };

  const tile = (image) => {
    const img = h("img", { alt: "", width: 128, height: 128 });
    const item = h("li", { "data-image": image.id },
      h("button", { type: "button", class: "tile", onclick: () => showDetail(image.id) },
        img, h("span", { class: "caption" }, image.name)));
    return { item, img };
  };

  async function loadPage(reset) {
    const mine = (generation += reset ? 1 : 0);
    if (reset) {
      cursor = null;
      grid.replaceChildren();
      detail.hidden = true;
    }
    more.hidden = true;
    summary.textContent = "Loading images…";
    let page;
    try {
      page = await api.listImages({ label: selected || undefined, limit: PAGE, cursor: cursor || undefined });
    } catch (error) {
      summary.textContent = `Images could not be loaded: ${error.message}`;
      return;
    }
    if (mine !== generation) return;
    const tiles = page.images.map((image) => ({ image, ...tile(image) }));
    grid.append(...tiles.map((entry) => entry.item));
    cursor = page.next_cursor;
    more.hidden = !cursor;
    summary.textContent = `${grid.children.length} images shown${selected ? ` with ${selected}` : ""}${cursor ? "; more available" : ""}.`;
    // The list has no thumbnail links: each tile asks for its image's presigned ones.
    const queue = [...tiles];
    await Promise.all(Array.from({ length: DETAIL_CONCURRENCY }, async () => {
      for (let entry = queue.shift(); entry; entry = queue.shift()) {
        try {
          const full = await api.getImage(entry.image.id);
          const sizes = Object.keys(full.thumbnails).map(Number).sort((a, b) => a - b);
          const best = sizes.find((size) => size >= 128) ?? sizes.at(-1);
          if (best !== undefined) entry.img.src = full.thumbnails[String(best)].url;
          entry.img.alt = `${full.name}: ${full.labels.join(", ") || "no labels yet"}`;
        } catch {
          entry.img.alt = `${entry.image.name} (no thumbnail)`;
        }
      }
    }));
  }

  async function showDetail(id) {
    let image;
    try {
      image = await api.getImage(id);
    } catch (error) {
      announce(`Image: ${error.message}`);
      return;
    }
    const sizes = Object.keys(image.thumbnails).map(Number).sort((a, b) => b - a);
    const meta = [
      ["Name", image.name], ["Size", pixels(image)],
      ["Format", image.format], ["Bytes", formatBytes(image.bytes)], ["Captured", image.captured_at],
      ["Camera", image.camera], ["Uploaded", image.created_at], ["Updated", image.updated_at],
      ["Archived", image.archived_at], ["Links valid until", image.links_expire_at],
    ].filter(([, value]) => value);
    const close = h("button", { type: "button", onclick: () => { detail.hidden = true; grid.querySelector(`[data-image="${CSS.escape(id)}"] button`)?.focus(); } }, "Close");
    const actions = h("div", { class: "row" },
      image.original_url ? h("a", { href: image.original_url, id: "original-link", download: image.name }, "Download the original") : null,
      close);
    if (auth.session?.isAdmin) {
      actions.append(h("button", { type: "button", class: "danger", id: "delete-image", onclick: () => remove(image) }, "Delete image"));
    }
    detail.replaceChildren(
      h("h2", { id: "detail-title", tabindex: "-1" }, image.name),
      sizes.length ? h("img", { src: image.thumbnails[String(sizes[0])].url, alt: `Thumbnail of ${image.name}` }) : null,
      h("dl", { class: "meta" }, meta.flatMap(([name, value]) => [h("dt", {}, name), h("dd", {}, value)])),
      h("h3", {}, "Labels"),
      image.label_details.length
        ? h("ul", { id: "detail-labels" }, image.label_details.map((entry) =>
          h("li", { "data-label": entry.label }, h("span", { class: "label-name" }, entry.label), " ",
            h("span", { class: "muted confidence" }, confidenceText(entry.confidence)))))
        : h("p", {}, "No labels yet."),
      h("div", { class: "table-wrap" }, h("table", { id: "detail-thumbnails" },
        h("caption", {}, "Thumbnails"),
        h("thead", {}, h("tr", {}, ["Longest side", "Pixels", "Bytes", "Link"].map((name) => h("th", { scope: "col" }, name)))),
        h("tbody", {}, sizes.map((size) => thumbnailRow(size, image.thumbnails[String(size)]))))),
      actions);
    detail.hidden = false;
    detail.querySelector("h2").focus();
  }

  async function remove(image) {
    if (!window.confirm(`Delete ${image.name}? Its original, thumbnails and labels go with it.`)) return;
    try {
      await api.deleteImage(image.id);
    } catch (error) {
      announce(`Not deleted: ${error.message}`);
      return;
    }
    announce(`${image.name} deleted.`);
    showLabels((await api.listLabels()).labels);
    loadPage(true);
  }

  render(main, h("h1", {}, "Library"),
    h("div", { class: "layout" },
      h("div", {}, labelBox),
      h("div", {}, summary, grid, h("div", { class: "row" }, more), detail)));
  showLabels([]);
  pollLabels();
  loadPage(true);
}

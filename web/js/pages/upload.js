/** Upload: many files by picker or drag and drop, a progress bar each and one overall. */
import { h, render, formatBytes, announce } from "../dom.js";
import { UploadJob, isDataFile } from "../uploads.js";

const STATE_TEXT = {
  queued: "queued", uploading: "uploading", processing: "processing", processed: "processed",
  rejected: "rejected", refused: "refused", failed: "failed", paused: "paused",
};
const FINAL = new Set(["processed", "rejected", "refused", "failed", "paused"]);

export function show({ main, api, config, signal }) {
  const jobs = [];
  const list = h("ul", { class: "files", "aria-label": "Files" });
  const overall = h("progress", { id: "overall-progress", max: 1, value: 0, "aria-label": "Overall progress" });
  const overallText = h("p", { id: "overall-text", class: "muted" }, "No files yet.");
  const input = h("input", { type: "file", id: "files", multiple: true, accept: "image/*,.json,.jsonl,.ndjson" });
  const datasetField = config.datasets.length
    ? h("select", { id: "dataset" }, config.datasets.map((name) => h("option", { value: name }, name)))
    : h("input", { type: "text", id: "dataset" });
  const drop = h("div", { class: "drop", id: "drop" },
    h("p", {}, "Drop photos (JPEG, PNG, WebP, GIF, TIFF) and data files (JSON, JSON Lines) here, or ",
      h("label", { for: "files" }, "choose files:"), input));

  const updateOverall = () => {
    const total = jobs.reduce((sum, job) => sum + job.total, 0);
    const loaded = jobs.reduce((sum, job) => sum + Math.min(job.loaded, job.total), 0);
    overall.max = Math.max(total, 1);
    overall.value = loaded;
    const finished = jobs.filter((job) => FINAL.has(job.state)).length;
    overallText.textContent = `${jobs.length} files, ${formatBytes(loaded)} of ${formatBytes(total)} sent, ${finished} finished`;
    if (jobs.length && finished === jobs.length) announce("Every file has an outcome.");
  };

  const row = (job) => {
    const id = `file-${jobs.length}`;
    const state = h("span", { class: `state ${job.state}`, "data-role": "state" }, STATE_TEXT[job.state]);
    const bar = h("progress", { max: Math.max(job.total, 1), value: 0, "aria-labelledby": `${id}-name` });
    const message = h("p", { class: "message", "data-role": "message" });
    const resume = h("button", { type: "button", hidden: true, onclick: () => job.run(api, { signal, pollMs: config.poll_seconds * 1000 }) }, "Resume");
    const item = h("li", { "data-file": job.file.name, "data-state": job.state },
      h("span", { class: "name", id: `${id}-name` }, job.file.name), " ",
      h("span", { class: "muted" }, formatBytes(job.total)), state, bar, message, resume);
    job.listeners.add(() => {
      item.dataset.state = job.state;
      state.className = `state ${job.state}`;
      state.textContent = STATE_TEXT[job.state];
      bar.value = Math.min(job.loaded, job.total);
      message.textContent = job.message;
      message.className = `message ${["rejected", "refused", "failed"].includes(job.state) ? "error" : ""}`;
      resume.hidden = job.state !== "paused";
      updateOverall();
    });
    return item;
  };

  const add = (files) => {
    const dataset = datasetField.value.trim();
    for (const file of files) {
      if (isDataFile(file) && !dataset) {
        announce(`${file.name}: choose the dataset of data files first.`);
        continue;
      }
      const job = new UploadJob(file, { dataset, threshold: config.multipart_threshold_bytes });
      list.append(row(job));
      jobs.push(job);
      job.run(api, { signal, pollMs: config.poll_seconds * 1000 });
    }
    updateOverall();
  };

  input.addEventListener("change", () => { add([...input.files]); input.value = ""; });
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    add([...event.dataTransfer.files]);
  });

  render(main, h("h1", {}, "Upload"),
    h("label", { for: "dataset" }, "Dataset of data files"), datasetField,
    drop, h("h2", {}, "Progress"), overall, overallText, list);
}

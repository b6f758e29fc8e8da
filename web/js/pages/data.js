/**
 * Data files: their receipts, filterable by status, with each invalid record's position and
 * reason, and links (presigned, short-lived) to the clean output and the errors report.
 */
import { h, render } from "../dom.js";
import { describeError } from "../uploads.js";

export function show({ main, api }) {
  let cursor = null;
  const status = h("select", { id: "status-filter" },
    h("option", { value: "" }, "every status"), h("option", { value: "processed" }, "processed"),
    h("option", { value: "rejected" }, "rejected"));
  const body = h("tbody");
  const summary = h("p", { class: "muted", role: "status", id: "inputs-summary" });
  const more = h("button", { type: "button", hidden: true, onclick: () => load(false) }, "Load more");

  const row = (input) => h("tr", { "data-key": input.key, "data-status": input.status },
    h("td", {}, input.key.split("/").pop()),
    h("td", { class: `state ${input.status}` }, input.status),
    h("td", {}, input.dataset || ""),
    h("td", {}, Object.entries(input.stats || {}).map(([name, value]) => `${name.replace(/_/g, " ")}: ${value}`).join(", ")),
    h("td", {}, input.errors?.length
      ? h("ul", { class: "reasons" }, input.errors.map((error) => h("li", {}, describeError(error))),
        input.errors_truncated ? h("li", {}, "… more in the full error report") : null)
      : "none"),
    h("td", { class: "links" }, outputLinks(input)));

  const outputLinks = (input) => {
    const name = input.key.split("/").pop();
    const link = (url, text, cls) => url
      ? h("li", {}, h("a", { href: url, class: cls }, text, h("span", { class: "visually-hidden" }, ` of ${name}`)))
      : null;
    const links = [link(input.output_url, "Clean output", "output-link"),
      link(input.errors_report_url, "Errors report", "errors-report-link")].filter(Boolean);
    return links.length ? h("ul", { class: "reasons" }, links) : "none";
  };

  async function load(reset) {
    if (reset) { cursor = null; body.replaceChildren(); }
    summary.textContent = "Loading…";
    try {
      const page = await api.listInputs({ status: status.value, cursor: cursor || undefined, limit: 50 });
      body.append(...page.inputs.filter((input) => input.kind === "data" || input.dataset).map(row));
      cursor = page.next_cursor;
      more.hidden = !cursor;
      summary.textContent = `${body.children.length} data files.`;
    } catch (error) {
      summary.textContent = `Receipts could not be loaded: ${error.message}`;
    }
  }

  status.addEventListener("change", () => load(true));
  render(main, h("h1", {}, "Data files"),
    h("label", { for: "status-filter" }, "Show data files with"), status, summary,
    h("div", { class: "table-wrap" }, h("table", { id: "inputs" },
      h("caption", { class: "muted" }, "Invalid records are named by position and rule, never by value."),
      h("thead", {}, h("tr", {}, ["File", "Status", "Dataset", "Records", "Reasons", "Outputs"].map((name) => h("th", { scope: "col" }, name)))),
      body)),
    h("div", { class: "row" }, more));
  load(true);
}

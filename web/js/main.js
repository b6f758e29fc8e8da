/**
 * The app: configuration, sign-in, and a hash router over the pages (#/upload, #/library,
 * #/download, #/data). Hash routes need no server rewrites, so S3 + CloudFront and the local
 * runtime serve the same files unchanged. Leaving a page aborts its polling.
 */
import { loadConfig } from "./config.js";
import { Auth } from "./auth.js";
import { Api } from "./api.js";
import { h, render, announce } from "./dom.js";
import * as signin from "./pages/signin.js";
import * as upload from "./pages/upload.js";
import * as library from "./pages/library.js";
import * as download from "./pages/download.js";
import * as data from "./pages/data.js";

const PAGES = { "/upload": upload, "/library": library, "/download": download, "/data": data };
const HOME = "/upload";

const main = document.getElementById("main");
let context = null;
let current = null;

function route() {
  current?.abort();
  current = new AbortController();
  const path = location.hash.replace(/^#/, "") || HOME;
  const { auth } = context;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.getAttribute("href") === `#${path}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (!auth.session) {
    signin.show({ main, auth, reason: context.reason });
    return;
  }
  const page = PAGES[path];
  if (!page) {
    render(main, h("h1", {}, "Not found"), h("p", {}, h("a", { href: `#${HOME}` }, "Go to Upload")));
    return;
  }
  document.title = `${path.slice(1)[0].toUpperCase()}${path.slice(2)} · sluice`;
  page.show({ ...context, main, signal: current.signal });
}

function onSessionChange(session, reason) {
  document.getElementById("nav").hidden = !session;
  document.getElementById("who").hidden = !session;
  document.getElementById("who-name").textContent = session
    ? `${session.email}${session.isAdmin ? " (admin)" : ""}` : "";
  if (!context) return;
  context.reason = reason;
  if (reason) announce(reason);
  if (!session || !location.hash || location.hash === "#/signin") {
    if (session && location.hash !== `#${HOME}`) location.hash = HOME;
    else route();
  }
}

async function start() {
  let config;
  try {
    config = await loadConfig();
  } catch (error) {
    render(main, h("h1", {}, "sluice cannot start"), h("p", { class: "error" }, error.message));
    return;
  }
  const auth = new Auth(config, onSessionChange);
  context = { config, auth, api: new Api(config, auth), reason: "" };
  document.getElementById("sign-out").addEventListener("click", () => auth.signOut());
  window.addEventListener("hashchange", route);
  try {
    await auth.start();
  } catch (error) {
    context.reason = error.message;
  }
  route();
}

start();

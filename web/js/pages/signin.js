/** Sign in: the hosted UI button (AWS) or the password form (local emulator), per config.json. */
import { h, render } from "../dom.js";

export function show({ main, auth, reason }) {
  const note = reason ? h("p", { class: "muted", role: "note" }, reason) : null;
  if (auth.mode === "hosted_ui") {
    render(main, h("h1", {}, "Sign in"), note,
      h("p", {}, "You sign in on the user pool's own page and come straight back."),
      h("button", { type: "button", class: "primary", onclick: () => auth.signInWithHostedUi() }, "Sign in"));
    return;
  }
  const error = h("p", { class: "error", id: "sign-in-error", role: "alert" });
  const email = h("input", { type: "email", id: "email", name: "email", autocomplete: "username", required: true });
  const password = h("input", { type: "password", id: "password", name: "password", autocomplete: "current-password", required: true });
  const submit = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h("form", { class: "form", "aria-describedby": "sign-in-error" },
    h("label", { for: "email" }, "Email"), email,
    h("label", { for: "password" }, "Password"), password,
    h("div", { class: "row" }, submit), error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    submit.disabled = true;
    try {
      const result = await auth.signInWithPassword(email.value.trim(), password.value);
      if (result.challenge) showNewPassword({ main, auth }, result.challenge);
    } catch (failure) {
      error.textContent = failure.message;
    } finally {
      submit.disabled = false;
    }
  });
  render(main, h("h1", {}, "Sign in"), note, form);
}

function showNewPassword({ main, auth }, challenge) {
  const error = h("p", { class: "error", id: "new-password-error", role: "alert" });
  const first = h("input", { type: "password", id: "new-password", autocomplete: "new-password", required: true, "aria-describedby": "password-rules" });
  const again = h("input", { type: "password", id: "new-password-again", autocomplete: "new-password", required: true });
  const submit = h("button", { type: "submit", class: "primary" }, "Set password and sign in");
  const form = h("form", { class: "form" },
    h("label", { for: "new-password" }, "New password"), first,
    h("p", { id: "password-rules", class: "muted" }, "At least 12 characters with upper and lower case letters, a digit and a symbol."),
    h("label", { for: "new-password-again" }, "New password, again"), again,
    h("div", { class: "row" }, submit), error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (first.value !== again.value) {
      error.textContent = "The two passwords differ.";
      return;
    }
    submit.disabled = true;
    try {
      await auth.setNewPassword(challenge, first.value);
    } catch (failure) {
      error.textContent = failure.message;
    } finally {
      submit.disabled = false;
    }
  });
  render(main, h("h1", {}, "Choose a new password"),
    h("p", {}, "This account has a temporary password: choose your own to continue."), form);
}

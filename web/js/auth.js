/**
 * Sign-in, chosen by config.json's `sign_in` (never by where the app runs):
 *
 * - `hosted_ui` (AWS): the Cognito hosted UI with the authorization-code flow and PKCE
 *   (RFC 7636, S256). The browser never sees a password and the web client allows no
 *   password flow at all.
 * - `password`: a form that calls the user pool's own JSON API (`InitiateAuth` with
 *   USER_PASSWORD_AUTH, `RespondToAuthChallenge` for NEW_PASSWORD_REQUIRED). The local
 *   emulator (moto) implements the user pool API but no hosted UI, so this is how the local
 *   stack signs in; config.json names the client that allows it (the CLI's client).
 *
 * Tokens live in sessionStorage (gone with the tab; never localStorage or cookies), are
 * refreshed a minute before they expire, and a failed refresh signs the user out.
 */
const STORE = "sluice.tokens";
const PKCE_STORE = "sluice.pkce";
const REFRESH_MARGIN_MS = 60_000;

function decodeJwt(token) {
  const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  const json = decodeURIComponent(
    atob(payload.padEnd(payload.length + ((4 - (payload.length % 4)) % 4), "="))
      .split("")
      .map((c) => `%${c.charCodeAt(0).toString(16).padStart(2, "0")}`)
      .join(""),
  );
  return JSON.parse(json);
}

function base64url(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes)))
    .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString(byteCount = 32) {
  return base64url(crypto.getRandomValues(new Uint8Array(byteCount)));
}

export class AuthError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** The signed-in user's tokens, with what the app shows of them. */
export class Session {
  constructor(tokens) {
    this.tokens = tokens;
    this.claims = decodeJwt(tokens.id_token);
  }

  get idToken() { return this.tokens.id_token; }
  get email() { return this.claims.email || this.claims["cognito:username"] || this.claims.sub; }
  get groups() {
    const groups = this.claims["cognito:groups"];
    return Array.isArray(groups) ? groups : [];
  }
  get isAdmin() { return this.groups.includes("admin"); }
  get expiresAt() { return this.claims.exp * 1000; }
}

/** The user pool's JSON API (what the AWS SDKs call), for the `password` sign-in. */
async function cognitoCall(config, action, body) {
  const endpoint = config.cognito_endpoint || `https://cognito-idp.${config.region}.amazonaws.com/`;
  const response = await fetch(endpoint, {
    method: "POST",
    headers: {
      "Content-Type": "application/x-amz-json-1.1",
      "X-Amz-Target": `AWSCognitoIdentityProviderService.${action}`,
    },
    body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    const code = String(answer.__type || "Error").split("#").pop();
    const messages = {
      NotAuthorizedException: "Incorrect email or password.",
      UserNotFoundException: "Incorrect email or password.",
      InvalidPasswordException: answer.message || "The new password does not meet the policy.",
      PasswordResetRequiredException: "This account needs a password reset.",
      TooManyRequestsException: "Too many attempts; wait a moment and try again.",
    };
    throw new AuthError(code, messages[code] || answer.message || `Sign-in failed (${code}).`);
  }
  return answer;
}

function tokensFrom(result, previousRefresh) {
  return {
    id_token: result.IdToken || result.id_token,
    access_token: result.AccessToken || result.access_token,
    refresh_token: result.RefreshToken || result.refresh_token || previousRefresh,
  };
}

/** Both sign-in modes behind one interface; `onChange` hears every sign-in and sign-out. */
export class Auth {
  constructor(config, onChange) {
    this.config = config;
    this.onChange = onChange;
    this.session = null;
    this.timer = 0;
    this.refreshing = null;
  }

  get mode() { return this.config.sign_in; }

  /** Restore the tab's session, or finish a hosted-UI redirect (?code=...&state=...). */
  async start() {
    const params = new URLSearchParams(location.search);
    if (this.mode === "hosted_ui" && params.has("code")) {
      await this.finishHostedUi(params);
      history.replaceState(null, "", `${location.pathname}#/upload`);
      return;
    }
    const saved = sessionStorage.getItem(STORE);
    if (!saved) return;
    try {
      const session = new Session(JSON.parse(saved));
      if (session.expiresAt - Date.now() > REFRESH_MARGIN_MS) this.setSession(session.tokens);
      else {
        this.session = session;
        await this.refresh();
      }
    } catch {
      this.clear();
    }
  }

  setSession(tokens) {
    this.session = new Session(tokens);
    sessionStorage.setItem(STORE, JSON.stringify(tokens));
    clearTimeout(this.timer);
    const wait = Math.max(1000, this.session.expiresAt - Date.now() - REFRESH_MARGIN_MS);
    this.timer = setTimeout(() => this.refresh().catch(() => {}), wait);
    this.onChange(this.session);
  }

  clear(reason) {
    clearTimeout(this.timer);
    this.session = null;
    sessionStorage.removeItem(STORE);
    this.onChange(null, reason);
  }

  // --- password mode ------------------------------------------------------------------------

  /** Sign in; resolves to {challenge} when Cognito asks for a new password first. */
  async signInWithPassword(username, password) {
    const answer = await cognitoCall(this.config, "InitiateAuth", {
      AuthFlow: "USER_PASSWORD_AUTH",
      ClientId: this.config.client_id,
      AuthParameters: { USERNAME: username, PASSWORD: password },
    });
    return this.acceptAnswer(answer, username);
  }

  async setNewPassword(challenge, newPassword) {
    const answer = await cognitoCall(this.config, "RespondToAuthChallenge", {
      ChallengeName: "NEW_PASSWORD_REQUIRED",
      ClientId: this.config.client_id,
      Session: challenge.session,
      ChallengeResponses: { USERNAME: challenge.username, NEW_PASSWORD: newPassword },
    });
    return this.acceptAnswer(answer, challenge.username);
  }

  acceptAnswer(answer, username) {
    if (answer.AuthenticationResult) {
      this.setSession(tokensFrom(answer.AuthenticationResult));
      return { signedIn: true };
    }
    if (answer.ChallengeName === "NEW_PASSWORD_REQUIRED") {
      return { challenge: { session: answer.Session, username } };
    }
    throw new AuthError("UnsupportedChallenge", `Sign-in needs ${answer.ChallengeName}, which this app does not offer.`);
  }

  // --- hosted UI mode -----------------------------------------------------------------------

  redirectUri() { return `${location.origin}/`; }

  async signInWithHostedUi() {
    const verifier = randomString(48);
    const state = randomString(16);
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
    sessionStorage.setItem(PKCE_STORE, JSON.stringify({ verifier, state }));
    const query = new URLSearchParams({
      response_type: "code",
      client_id: this.config.client_id,
      redirect_uri: this.redirectUri(),
      scope: "openid email profile",
      state,
      code_challenge: base64url(digest),
      code_challenge_method: "S256",
    });
    location.assign(`${this.config.auth_domain}/oauth2/authorize?${query}`);
  }

  async finishHostedUi(params) {
    const saved = JSON.parse(sessionStorage.getItem(PKCE_STORE) || "null");
    sessionStorage.removeItem(PKCE_STORE);
    if (!saved || saved.state !== params.get("state")) {
      throw new AuthError("StateMismatch", "The sign-in answer does not match this tab's request; sign in again.");
    }
    const tokens = await this.tokenEndpoint({
      grant_type: "authorization_code",
      client_id: this.config.client_id,
      code: params.get("code"),
      redirect_uri: this.redirectUri(),
      code_verifier: saved.verifier,
    });
    this.setSession(tokensFrom(tokens));
  }

  async tokenEndpoint(form) {
    const response = await fetch(`${this.config.auth_domain}/oauth2/token`, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(form),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) throw new AuthError(answer.error || "TokenError", "Sign-in failed; sign in again.");
    return answer;
  }

  // --- both ---------------------------------------------------------------------------------

  /** New id and access tokens from the refresh token; signs out when that fails. */
  refresh() {
    if (this.refreshing) return this.refreshing;
    const refreshToken = this.session?.tokens.refresh_token;
    this.refreshing = (async () => {
      try {
        if (!refreshToken) throw new AuthError("NoRefreshToken", "No refresh token.");
        const answer = this.mode === "password"
          ? (await cognitoCall(this.config, "InitiateAuth", {
            AuthFlow: "REFRESH_TOKEN_AUTH",
            ClientId: this.config.client_id,
            AuthParameters: { REFRESH_TOKEN: refreshToken },
          })).AuthenticationResult
          : await this.tokenEndpoint({
            grant_type: "refresh_token", client_id: this.config.client_id, refresh_token: refreshToken,
          });
        this.setSession(tokensFrom(answer, refreshToken));
        return true;
      } catch {
        this.clear("Your session expired; please sign in again.");
        return false;
      } finally {
        this.refreshing = null;
      }
    })();
    return this.refreshing;
  }

  signOut() {
    const hosted = this.mode === "hosted_ui" && this.session;
    this.clear("Signed out.");
    if (hosted) {
      const query = new URLSearchParams({ client_id: this.config.client_id, logout_uri: this.redirectUri() });
      location.assign(`${this.config.auth_domain}/logout?${query}`);
    }
  }
}

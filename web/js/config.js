/**
 * The app's configuration: `config.json`, written next to the app by Terraform (modules/web),
 * so one build serves every environment. Nothing environment-specific lives in the code.
 */
const REQUIRED = ["api_url", "region", "user_pool_id", "client_id", "sign_in"];

export async function loadConfig() {
  const response = await fetch("config.json", { cache: "no-store" });
  if (!response.ok) throw new Error(`config.json: HTTP ${response.status}`);
  const config = await response.json();
  const missing = REQUIRED.filter((name) => !config[name]);
  if (missing.length) throw new Error(`config.json lacks ${missing.join(", ")}`);
  if (!["hosted_ui", "password"].includes(config.sign_in)) {
    throw new Error(`config.json: sign_in must be hosted_ui or password, not ${config.sign_in}`);
  }
  return Object.freeze({
    ...config,
    api_url: config.api_url.replace(/\/+$/, ""),
    datasets: config.datasets || [],
    multipart_threshold_bytes: config.multipart_threshold_bytes || 64 * 1024 * 1024,
    poll_seconds: config.poll_seconds || 3,
  });
}

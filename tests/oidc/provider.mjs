// A certified OpenID provider (npm oidc-provider) on loopback for Berth's sign-in tests.
// Usage: node provider.mjs <oidc-provider entry file> <config.json>
// config: {issuer, port, client: {client_id, client_secret, redirect_uris}, accounts: {login: claims}}
// Its built-in development login page accepts any password; the login picks the account.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [entry, configPath] = process.argv.slice(2);
const { default: Provider } = await import(pathToFileURL(entry).href);
const config = JSON.parse(readFileSync(configPath, "utf8"));

const provider = new Provider(config.issuer, {
  clients: [{ ...config.client, grant_types: ["authorization_code"], response_types: ["code"] }],
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["name", "preferred_username"],
    groups: ["groups"],
  },
  scopes: ["openid", "email", "profile", "groups"],
  cookies: { keys: ["berth-test-only"] },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const claims = config.accounts[id];
    if (!claims) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...claims }; } };
  },
});
provider.on("server_error", (ctx, err) => console.error("server_error", err));
provider.listen(config.port, "127.0.0.1", () => console.log(`listening ${config.issuer}`));

// The TypeScript SDK (@modelcontextprotocol/client, v2 line) signing in to Mana over OAuth, as
// the MCP Inspector, mcp-remote and editors built on it do: StreamableHTTPClientTransport with an
// OAuthClientProvider. Driven by tests/browser/test_ts_sign_in.py.
//
// argv: <dist/index.mjs of the package> <MCP URL> <mode: legacy|auto> <redirect URI>
//       <client name> <scenario: refresh|step-up|revoked|deny>
//       <registration: dcr (a public client) | dcr-secret (a confidential client,
//       client_secret_basic) | cimd> [cimd: the client_id URL of its metadata document]
// Scenarios after the sign-in (tools listed, me.listReferenceImages called): `refresh` runs out
// the access token and calls again; `step-up` calls notes.create, which a read-only connection
// may not, and follows the server's scope challenge through another authorization; `revoked`
// waits while the user ends the connection, then calls until the SDK asks for a new sign-in;
// `deny`: the user refuses on the consent page, and the client reports the SDK's error.
//
// stdout, one JSON object a line:
//   {"authorize": URL, "requests": [...]}
//                        the SDK's redirectToAuthorization (and the requests made so far); the
//                        driver opens it in a browser and answers with one stdin line: the query
//                        string that reached the redirect URI
//   {"waiting": what}    the client waits for one stdin line (any) before it goes on
//   {"result": {...}}    at the end: what the client saw (see `report` below)
// Any failure: a message on stderr and exit status 1.
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";

const [entry, serverUrl, mode, redirectUri, clientName, scenario, registration, metadataUrl] =
  process.argv.slice(2);
const sdk = await import(pathToFileURL(entry).href);
const { Client, StreamableHTTPClientTransport, UnauthorizedError } = sdk;

const stdin = createInterface({ input: process.stdin });
const lines = stdin[Symbol.asyncIterator]();
async function nextLine() {
  const { value, done } = await lines.next();
  if (done) throw new Error("stdin closed while the client waited for its driver");
  return value;
}
function emit(object) {
  process.stdout.write(JSON.stringify(object) + "\n");
}

/** The client's storage: everything the SDK keeps between the redirect and the callback. */
class MemoryProvider {
  constructor() {
    // An https metadata document URL is offered as `clientMetadataUrl`: the SDK uses it as the
    // client id when the authorization server's metadata says it supports such documents. That
    // option takes https URLs only, so a document served over plain http from an allowlisted
    // loopback origin is given as the stored client information instead: what the SDK stores
    // when it takes the https branch.
    const https = metadataUrl?.startsWith("https://");
    this.clientMetadataUrl = https ? metadataUrl : undefined;
    this.initialClient = metadataUrl && !https ? { client_id: metadataUrl } : undefined;
    this.client = this.initialClient;
    this.invalidated = [];
    this.stored = undefined;
    this.verifier = undefined;
    this.discovery = undefined;
    this.sentState = undefined;
    this.redirects = 0;
    this.registered = false;
  }
  get redirectUrl() {
    return redirectUri;
  }
  get clientMetadata() {
    return {
      client_name: clientName,
      redirect_uris: [redirectUri],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: registration === "dcr-secret" ? "client_secret_basic" : "none",
    };
  }
  state() {
    this.sentState = crypto.randomUUID();
    return this.sentState;
  }
  clientInformation() {
    return this.client;
  }
  saveClientInformation(info) {
    this.registered ||= info.client_id !== metadataUrl;
    this.client = info;
  }
  tokens() {
    return this.stored;
  }
  saveTokens(tokens) {
    this.stored = tokens;
  }
  saveCodeVerifier(verifier) {
    this.verifier = verifier;
  }
  codeVerifier() {
    if (!this.verifier) throw new Error("no PKCE verifier saved");
    return this.verifier;
  }
  // what the SDK drops when the server says a credential is no longer valid (invalid_grant:
  // tokens; invalid_client: the client too), as mcp-remote does, so that it asks again
  invalidateCredentials(scope) {
    if (scope === "all" || scope === "client") this.client = this.initialClient;
    if (scope === "all" || scope === "tokens") this.stored = undefined;
    if (scope === "all" || scope === "verifier") this.verifier = undefined;
    if (scope === "all" || scope === "discovery") this.discovery = undefined;
    this.invalidated.push(scope);
  }
  saveDiscoveryState(state) {
    this.discovery = state;
  }
  discoveryState() {
    return this.discovery;
  }
  redirectToAuthorization(url) {
    this.redirects += 1;
    emit({ authorize: url.href, requests: [...requests] });
  }
}

/** Every HTTP request the SDK makes (discovery, registration, tokens, MCP), for the report. */
const requests = [];
async function recordingFetch(input, init) {
  const url = new URL(input instanceof Request ? input.url : String(input));
  const method = init?.method ?? (input instanceof Request ? input.method : "GET");
  const scheme = new Headers(init?.headers).get("authorization")?.split(" ")[0] ?? null;
  const response = await fetch(input, init);
  requests.push({ method, path: url.pathname, status: response.status, auth: scheme });
  return response;
}

const provider = new MemoryProvider();
const options = mode === "auto" ? { versionNegotiation: { mode: "auto" } } : {};
const transportFor = () =>
  new StreamableHTTPClientTransport(new URL(serverUrl), {
    authProvider: provider,
    fetch: recordingFetch,
  });

/** The user's answer to the last redirectToAuthorization, checked and handed to the SDK. */
async function finishAuthorization(transport) {
  const callback = new URLSearchParams(await nextLine());
  if (callback.get("state") !== provider.sentState) {
    throw new Error(`the callback's state ${callback.get("state")} is not the one sent`);
  }
  // the URLSearchParams form: the SDK checks `iss` (RFC 9207) before redeeming the code
  await transport.finishAuth(callback);
}

/** Errors the client reports besides its calls' own (e.g. of a 2025-11-25 session's GET
 * stream), but for the requests for the user's authorization, counted as `redirects`. */
const errors = [];
function newClient() {
  const made = new Client({ name: clientName, version: "0.0.1" }, options);
  made.onerror = (error) => {
    if (!(error instanceof UnauthorizedError)) errors.push(`${error?.name}: ${error?.message}`);
  };
  return made;
}

let client = newClient();
let transport = transportFor();
let firstConnect = "connected";
let denied = null;
try {
  await client.connect(transport);
} catch (error) {
  if (!(error instanceof UnauthorizedError)) throw error;
  firstConnect = "unauthorized";
  try {
    await finishAuthorization(transport);
  } catch (refusal) {
    // `deny`: the user said no; the SDK surfaces the callback's error (after checking its iss)
    if (scenario !== "deny") throw refusal;
    denied = { name: refusal.name, code: refusal.code ?? null, message: refusal.message };
  }
  if (!denied) {
    await client.close();
    client = newClient();
    transport = transportFor();
    await client.connect(transport);
  }
}

/** After the sign-in: the tools, one call, then the scenario's steps; what the client saw. */
async function work() {
  const tools = (await client.listTools()).tools.map((tool) => tool.name);
  const images = await client.callTool({ name: "me.listReferenceImages", arguments: {} });
  const signedIn = provider.stored;
  const imageIds = (result) =>
    result.isError
      ? { error: result.content }
      : (result.structuredContent?.images ?? []).map((image) => image.id);
  const report = {
    firstConnect,
    protocol: transport.protocolVersion ?? null,
    sessionId: transport.sessionId ?? null,
    clientId: provider.client?.client_id ?? null,
    clientSecret: Boolean(provider.client?.client_secret),
    registered: provider.registered,
    scope: signedIn?.scope ?? null,
    tools,
    images: imageIds(images),
    spaceId: images._meta?.["mana/spaceId"] ?? null,
  };

  if (scenario === "step-up") {
    // A write tool on a read-only connection: the server's 403 insufficient_scope names the
    // scope, the SDK asks for the user's authorization of it (another redirect), and after it
    // the call is retried.
    const note = { name: "notes.create", arguments: { title: `ts step-up ${mode}`, body: "ts" } };
    let stepUp = "not asked";
    try {
      const created = await client.callTool(note);
      stepUp = created.isError ? `error: ${JSON.stringify(created.content)}` : "created without";
    } catch (error) {
      if (!(error instanceof UnauthorizedError)) throw error;
      stepUp = "asked";
      await finishAuthorization(transport);
    }
    const created = await client.callTool(note);
    Object.assign(report, {
      stepUp,
      created: !created.isError,
      createdSpaceId: created._meta?.["mana/spaceId"] ?? null,
      scopeAfter: provider.stored?.scope ?? null,
    });
  } else if (scenario === "revoked") {
    // The user ends the connection (`mana connections revoke`) while the client is connected:
    // once the server refuses the access token (its grant check may trust it for a moment),
    // the refresh is refused too, and the SDK asks the user to sign in again.
    emit({ waiting: "connected" });
    await nextLine();
    let calls = 0;
    let reauthorized = false;
    while (!reauthorized && calls < 40) {
      calls += 1;
      try {
        await client.callTool({ name: "me.listReferenceImages", arguments: {} });
        await new Promise((resolve) => setTimeout(resolve, 250));
      } catch (error) {
        if (!(error instanceof UnauthorizedError)) throw error;
        await finishAuthorization(transport);
        reauthorized = true;
      }
    }
    const again = await client.callTool({ name: "me.listReferenceImages", arguments: {} });
    Object.assign(report, {
      reauthorized,
      afterSignIn: imageIds(again),
      afterSignInSpaceId: again._meta?.["mana/spaceId"] ?? null,
      invalidated: provider.invalidated,
    });
  } else {
    // The access token runs out: the server answers 401 and the SDK refreshes (the refresh
    // token rotates) and retries, without another authorization.
    provider.stored = { ...signedIn, access_token: "expired" };
    const again = await client.callTool({ name: "me.listReferenceImages", arguments: {} });
    const refreshed = provider.stored;
    Object.assign(report, {
      afterRefresh: imageIds(again),
      refreshRotated: Boolean(
        refreshed?.refresh_token && refreshed.refresh_token !== signedIn?.refresh_token,
      ),
      accessRenewed: Boolean(refreshed?.access_token && refreshed.access_token !== "expired"),
    });
  }
  return report;
}

const outcome = denied ? { firstConnect, denied, tokens: Boolean(provider.stored) } : await work();
stdin.close();
emit({ result: { ...outcome, redirects: provider.redirects, requests, errors } });
await client.close();

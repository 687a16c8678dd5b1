// The TypeScript SDK (@modelcontextprotocol/client, v2 line) as a client of Mana over HTTP.
// argv: <path of the package's dist/index.mjs> <MCP URL> <bearer token> <mode: legacy|auto> <calls>
// Prints one JSON line: the negotiated protocol version, the tool names and each call's result.
import { pathToFileURL } from "node:url";

const [entry, url, token, mode, calls] = process.argv.slice(2);
const { Client, StreamableHTTPClientTransport } = await import(pathToFileURL(entry).href);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const options = mode === "auto" ? { versionNegotiation: { mode: "auto" } } : {};
const client = new Client({ name: "mana-replicas-ts", version: "0.0.1" }, options);
await client.connect(transport);
const tools = (await client.listTools()).tools.map((t) => t.name);
const results = [];
for (let i = 0; i < Number(calls); i++) {
  const title = `ts ${mode} note ${i}`;
  const created = await client.callTool({ name: "notes.create", arguments: { title, body: "ts" } });
  const found = await client.callTool({ name: "notes.search", arguments: { query: title } });
  results.push({
    created: !created.isError,
    found: (found.structuredContent?.notes ?? []).map((n) => n.title),
  });
}
console.log(JSON.stringify({
  protocol: transport.protocolVersion ?? null,
  sessionId: transport.sessionId ?? null,
  tools,
  results,
}));
await client.close();

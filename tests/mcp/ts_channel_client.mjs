// The TypeScript SDK (@modelcontextprotocol/client, v2 line) answering a Mana tool's questions.
// argv: <path of the package's dist/index.mjs> <MCP URL> <bearer token> <mode: legacy|auto>
// Calls chantest.ask (answering its two elicitation forms) and chantest.report (with a progress
// callback); prints one JSON line: the protocol version, the questions it was asked, the
// progress it received and both structured results.
import { pathToFileURL } from "node:url";

const [entry, url, token, mode] = process.argv.slice(2);
const { Client, StreamableHTTPClientTransport } = await import(pathToFileURL(entry).href);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const options = { capabilities: { elicitation: { form: {} } } };
if (mode === "auto") options.versionNegotiation = { mode: "auto" };
const client = new Client({ name: "mana-channel-ts", version: "0.0.1" }, options);
const asked = [];
const replies = { name: { name: "Tess" }, colour: { colour: "red" } };
client.setRequestHandler("elicitation/create", async (request) => {
  const params = request.params ?? request;
  asked.push(params.message);
  const field = Object.keys(params.requestedSchema.properties)[0];
  return { action: "accept", content: replies[field] };
});
await client.connect(transport);
const ask = await client.callTool({ name: "chantest.ask", arguments: { topic: "ts" } });
const progress = [];
const report = await client.callTool(
  { name: "chantest.report", arguments: {} },
  { onprogress: (p) => progress.push([p.progress, p.total ?? null]) },
);
console.log(JSON.stringify({
  protocol: transport.protocolVersion ?? null,
  asked,
  progress,
  ask: ask.structuredContent ?? ask.content,
  report: report.structuredContent ?? report.content,
}));
await client.close();

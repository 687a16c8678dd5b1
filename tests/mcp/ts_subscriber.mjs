// The TypeScript SDK (@modelcontextprotocol/client) as a 2025-11-25 client of Mana's resources,
// prompts and completions: reads a note, gets a prompt, completes a prompt argument, subscribes
// to the note and waits for its notifications/resources/updated.
// argv: <dist/index.mjs of the package> <MCP URL> <bearer token> <note URI> <completion prefix>
// Prints {"ready": true} once subscribed, then one JSON line with what it saw.
import { pathToFileURL } from "node:url";

const [entry, url, token, noteUri, prefix] = process.argv.slice(2);
const { Client, StreamableHTTPClientTransport } = await import(pathToFileURL(entry).href);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const client = new Client({ name: "mana-ts-subscriber", version: "0.0.1" });
let updated;
const arrived = new Promise((resolve) => {
  updated = resolve;
});
client.setNotificationHandler("notifications/resources/updated", (n) => updated(n.params.uri));
await client.connect(transport);

const read = await client.readResource({ uri: noteUri });
const prompt = await client.getPrompt({ name: "journal-reflection", arguments: { days: "3" } });
const completion = await client.complete({
  ref: { type: "ref/prompt", name: "journal-reflection" },
  argument: { name: "note", value: prefix },
});
await client.subscribeResource({ uri: noteUri });
console.log(JSON.stringify({ ready: true }));

const guard = new Promise((_, reject) =>
  setTimeout(() => reject(new Error("no resource update within 30 s")), 30000),
);
const uri = await Promise.race([arrived, guard]);
console.log(JSON.stringify({
  protocol: transport.protocolVersion ?? null,
  read: read.contents.map((c) => ({ uri: c.uri, mimeType: c.mimeType, text: c.text })),
  promptMessages: prompt.messages.length,
  completions: completion.completion.values,
  updated: uri,
}));
await client.close();

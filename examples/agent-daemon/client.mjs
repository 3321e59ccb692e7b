// Buys one d402 task through a running `d402-agent daemon` (Node 18+, no packages).
//
//   node client.mjs --daemon http://127.0.0.1:7402 --token-file ~/.config/d402-agent/daemon-token \
//       --capability util.json_transform@1 --input '{"value": {"a": 1}, "select": ["a"]}'
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    daemon: { type: "string" },
    "token-file": { type: "string" },
    capability: { type: "string" },
    input: { type: "string" },
  },
});
const token = readFileSync(values["token-file"], "utf8").trim();
const response = await fetch(`${values.daemon.replace(/\/$/, "")}/v1/tasks`, {
  method: "POST",
  headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
  body: JSON.stringify({ capabilityId: values.capability, input: JSON.parse(values.input) }),
});
const answer = await response.json();
if (!response.ok) {
  console.error(JSON.stringify(answer));
  process.exit(1);
}
console.log(JSON.stringify({ status: answer.task.status, result: answer.task.result ?? null }));
process.exit(answer.task.status === "accepted" ? 0 : 2);

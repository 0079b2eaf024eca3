// The page's logic: one MQTT connection, a request per click, the reply
// matched by its correlation data, and an explanation for every outcome —
// including silence, which is told apart from an outage by asking
// `gateway/health` on the anonymous reply topic (always the caller's own).
import { replyLevel } from "./reply-level.js";

const $ = (id) => document.getElementById(id);
const query = new URLSearchParams(location.search);
if (query.get("broker")) $("broker").value = query.get("broker");

let connection = null;
const waiting = new Map();

function hex(bytes) {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The `sub` claim of a JWT, read (not verified: the gateway verifies). */
function subjectOf(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const padded = part + "=".repeat((4 - (part.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes)).sub ?? null;
  } catch {
    return null;
  }
}

async function connect(url) {
  if (connection && connection.url === url) return connection.client;
  if (connection) connection.client.end(true);
  const client = mqtt.connect(url, { protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000 });
  await new Promise((resolve, reject) => {
    client.once("connect", resolve);
    client.once("error", reject);
  });
  client.on("message", (_topic, payload, packet) => {
    const properties = packet.properties ?? {};
    const key = properties.correlationData ? hex(properties.correlationData) : "";
    const settle = waiting.get(key);
    if (!settle) return;
    waiting.delete(key);
    const users = properties.userProperties ?? {};
    let body;
    try {
      body = JSON.parse(new TextDecoder().decode(payload));
    } catch {
      body = new TextDecoder().decode(payload);
    }
    settle({ status: Number(users.status ?? 0), body, properties: users });
  });
  connection = { url, client, subscribed: new Set() };
  return client;
}

/** One request; the reply, or null when none came within `timeout` ms. */
async function request(client, { topic, payload, token, replyTopic, timeout }) {
  if (!connection.subscribed.has(replyTopic)) {
    await client.subscribeAsync(replyTopic, { qos: 1 });
    connection.subscribed.add(replyTopic);
  }
  const correlation = crypto.getRandomValues(new Uint8Array(16));
  const reply = new Promise((resolve) => {
    waiting.set(hex(correlation), resolve);
    setTimeout(() => {
      if (waiting.delete(hex(correlation))) resolve(null);
    }, timeout);
  });
  const properties = { responseTopic: replyTopic, correlationData: correlation };
  if (token) properties.userProperties = { authorization: `Bearer ${token}` };
  await client.publishAsync(topic, payload, { qos: 1, properties });
  return reply;
}

function explain(reply) {
  const type = reply.body?.error?.type ?? "";
  const message = reply.body?.error?.message ?? "";
  switch (true) {
    case reply.status >= 200 && reply.status < 400:
      return "Answered by the service.";
    case reply.status === 401:
      return `Not authenticated (${message}): send a valid, unexpired token.`;
    case reply.status === 403:
      return `Authenticated, but not allowed (${message}).`;
    case reply.status === 429:
      return `Rate limited: retry after ${reply.properties["retry-after"] ?? "a while"} s.`;
    case type === "auth_unavailable":
      return "The gateway is loading its identity provider's keys: retry in a second.";
    case reply.status >= 500:
      return `The gateway or the service failed (${type}): ${message}`;
    default:
      return `${type}: ${message}`;
  }
}

async function send() {
  const outcome = $("outcome");
  const show = (status, explanation, body) => {
    $("status").textContent = String(status);
    $("explanation").textContent = explanation;
    $("body").textContent = body === undefined ? "" : JSON.stringify(body, null, 2);
    outcome.dataset.runs = String(Number(outcome.dataset.runs) + 1);
  };
  try {
    const client = await connect($("broker").value);
    const token = $("token").value.trim();
    const clientId = client.options.clientId;
    const anonymous = `replies/anonymous/${clientId}`;
    // The anonymous namespace, confined by the broker to this client id,
    // takes every reply — a refusal of an expired token included. A reply
    // topic typed with `{sub}` gets the token's subject as the gateway maps
    // it (for brokers whose user name is the subject).
    const sub = token ? subjectOf(token) : null;
    const typed = $("reply").value.trim();
    const replyTopic = typed
      ? typed.replace("{sub}", await replyLevel(sub ?? ""))
      : `${anonymous}/app`;
    const reply = await request(client, {
      topic: $("topic").value, payload: $("payload").value, token, replyTopic, timeout: 5000,
    });
    if (reply) return show(reply.status, explain(reply), reply.body);
    // Silence: is the gateway there at all? Ask on the anonymous reply
    // topic, which is always this client's own (never on the refused one).
    const health = await request(client, {
      topic: "gateway/health", payload: "", token: "", replyTopic: anonymous, timeout: 3000,
    });
    if (health) {
      return show("no reply", `The gateway is up, but no reply reached ${replyTopic}: it only answers on `
        + "replies/<your token's sub>/… (or replies/anonymous/<client id>/… without a token), "
        + "and the broker must let you read that topic.");
    }
    return show("no reply", "Neither the request nor a health check was answered: the gateway is down or unreachable.");
  } catch (error) {
    return show("error", `Could not reach the broker: ${error.message ?? error}`);
  }
}

$("send").addEventListener("click", send);

// A digital-human call against a real gateway (started by tests/clients/test_typescript.py, which
// passes AGENTGW_URL and AGENTGW_EMULATOR_URL): create an agent and a session, watch its events until
// `ended`; then the same through a TCP proxy that drops every connection mid-call, proving the watch
// resumes by cursor with no gap and no duplicate (compared with the gateway's own log).
import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";
import { AgentGw, Code, ConnectError, SessionState, type SessionEvent } from "../src/index.js";

const GATEWAY = process.env.AGENTGW_URL ?? "";
const EMULATOR = process.env.AGENTGW_EMULATOR_URL ?? "";
const AVATAR = "63c3aa64-1d80-4b04-a0be-1c65614eb7eb";

/** Loopback TCP proxy to the gateway whose connections can be cut (RST) on demand. */
class Proxy {
  readonly sockets = new Set<net.Socket>();
  accepted = 0;
  private server = net.createServer((client) => {
    this.accepted += 1;
    const upstream = net.connect(Number(new URL(GATEWAY).port), "127.0.0.1");
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.on("error", () => undefined);
      s.on("close", () => this.sockets.delete(s));
    }
    client.pipe(upstream).pipe(client);
  });
  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    const address = this.server.address() as net.AddressInfo;
    return `http://127.0.0.1:${address.port}`;
  }
  cut(): void {
    for (const s of this.sockets) s.resetAndDestroy();
  }
  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

async function userSays(instanceId: string, text: string): Promise<void> {
  const response = await fetch(`${EMULATOR}/_emulator/instances/${instanceId}/turns`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ text }),
  });
  assert.equal(response.status, 200);
}

async function call(gw: AgentGw, agentId: string, duringCall?: () => void): Promise<SessionEvent[]> {
  await gw.agents.createAgent({
    agent: {
      agentId,
      llm: { url: "https://llm.example/v1/chat/completions", apiKey: "k", model: "m" },
      tts: { vendor: "ByteDance", app: { appid: "zego_test", token: "zego_test", cluster: "volcano_tts" } },
    },
    requestId: `create-${agentId}`,
  });
  const { session } = await gw.sessions.createSession({
    agentId,
    userId: `${agentId}_user`,
    kind: { case: "digitalHuman", value: { digitalHumanId: AVATAR } },
    rtc: { roomId: `${agentId}_room`, userStreamId: `${agentId}_user_stream` },
    requestId: `session-${agentId}`,
  });
  assert.ok(session);
  const got: SessionEvent[] = [];
  const deadline = AbortSignal.timeout(30_000);
  for await (const event of gw.watch({ sessionIds: [session.sessionId], afterCursor: 0n, signal: deadline })) {
    got.push(event);
    if (event.payload.case === "created") {
      duringCall?.();
      await userSays(session.agentInstanceId, "Hello?");
    }
    if (event.payload.case === "asrResult") duringCall?.();
    if (event.payload.case === "llmResult") {
      await gw.sessions.endSession({ sessionId: session.sessionId, requestId: `end-${agentId}` });
    }
  }
  const ended = await gw.sessions.getSession({ sessionId: session.sessionId });
  assert.equal(ended.session?.state, SessionState.ENDED);
  return got;
}

test("a digital-human call: agent, session, events until ended", async () => {
  assert.ok(GATEWAY && EMULATOR, "AGENTGW_URL and AGENTGW_EMULATOR_URL must be set");
  const gw = new AgentGw({ baseUrl: GATEWAY });
  const events = await call(gw, "ts_agent");
  const kinds = events.map((e) => e.payload.case);
  assert.equal(kinds[0], "created");
  assert.equal(kinds.at(-1), "ended");
  assert.equal(kinds.filter((k) => k === "ended").length, 1);
  assert.ok(kinds.includes("asrResult") && kinds.includes("llmResult"), kinds.join(","));
  const token = await gw.tokens.createRoomToken({ userId: "ts_agent_user" });
  assert.ok(token.token.startsWith("04"));
  await assert.rejects(gw.agents.getAgent({ agentId: "nobody" }), (err: unknown) => {
    return err instanceof ConnectError && err.code === Code.NotFound;
  });
});

test("the watch resumes by cursor through dropped connections, no gap, no duplicate", async () => {
  const proxy = new Proxy();
  const gw = new AgentGw({ baseUrl: await proxy.start() });
  let events: SessionEvent[];
  try {
    events = await call(gw, "ts_cut", () => proxy.cut());
  } finally {
    await proxy.close();
  }
  assert.ok(proxy.accepted >= 3, `reconnected ${proxy.accepted - 1} times`);
  const cursors = events.map((e) => e.cursor);
  assert.deepEqual(cursors, [...new Set(cursors)].sort((a, b) => (a < b ? -1 : 1)));
  // Exactly what the gateway logged for the session, in order.
  const direct = new AgentGw({ baseUrl: GATEWAY });
  const logged = await direct.events.listEvents({ filter: { sessionIds: [events[0]!.sessionId] }, pageSize: 1000 });
  assert.deepEqual(cursors, logged.events.map((e) => e.cursor));
  assert.equal(events.at(-1)?.payload.case, "ended");
});

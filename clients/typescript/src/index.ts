// A thin TypeScript client for agentgw over gRPC (Connect's Node gRPC transport), with the same
// resume-by-cursor watch as the Python client: after UNAVAILABLE (a dropped connection, a restarting
// gateway, a reset connection) or RESOURCE_EXHAUSTED (SUBSCRIBER_TOO_SLOW) it reconnects after the last cursor it saw and
// skips any cursor already yielded, so the caller sees no gap and no duplicate.
import { randomUUID } from "node:crypto";
import {
  Code,
  ConnectError,
  createClient,
  type Client,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AgentService } from "./gen/agentgw/v1/agent_service_pb.js";
import {
  EventService,
  StartPosition,
  WatchEventsRequestSchema,
  type WatchEventsRequest,
} from "./gen/agentgw/v1/event_service_pb.js";
import { RoomTokenService } from "./gen/agentgw/v1/room_token_service_pb.js";
import type { EventType, SessionEvent } from "./gen/agentgw/v1/session_event_pb.js";
import { SessionService } from "./gen/agentgw/v1/session_service_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";

export * from "./gen/agentgw/v1/agent_pb.js";
export * from "./gen/agentgw/v1/agent_service_pb.js";
export * from "./gen/agentgw/v1/event_service_pb.js";
export * from "./gen/agentgw/v1/room_token_service_pb.js";
export * from "./gen/agentgw/v1/session_event_pb.js";
export * from "./gen/agentgw/v1/session_pb.js";
export * from "./gen/agentgw/v1/session_service_pb.js";
export { Code, ConnectError };

/** What to watch and from where. Without afterCursor or fromOldest the watch starts now. */
export interface WatchOptions {
  sessionIds?: string[];
  agentId?: string;
  roomId?: string;
  eventTypes?: EventType[];
  labelSelector?: string;
  /** Resume after this cursor (the last one you processed). */
  afterCursor?: bigint;
  /** Start at the oldest retained event. */
  fromOldest?: boolean;
  maxBatchSize?: number;
  /** Give up after this many milliseconds of failed reconnects with no message in between. */
  resumeForMs?: number;
  signal?: AbortSignal;
}

export interface AgentGwOptions {
  /** The gateway, e.g. "http://127.0.0.1:50051" ("https://" for TLS). */
  baseUrl: string;
  /** Sent as `authorization: Bearer <token>` on every call (a function is called per call). */
  bearerToken?: string | (() => string);
  /** Use this transport instead (TLS options, interceptors). */
  transport?: Transport;
}

/** A new request id / idempotency key. */
export function newRequestId(): string {
  return randomUUID().replaceAll("-", "");
}

// A watch only reads, so resuming is always safe: after UNAVAILABLE (no connection), ABORTED and
// CANCELED not asked for by the caller (what connect-node reports for a connection reset or a closed
// HTTP/2 session mid-stream) and RESOURCE_EXHAUSTED (too slow).
const RESUMABLE = new Set([Code.Unavailable, Code.Aborted, Code.Canceled, Code.ResourceExhausted]);

// Unary calls that are safe to send again: reads, the creates and ends that carry a request_id (a
// retry returns the original), deletes, interrupts, tokens. Speak, SendText and updates are not.
const IDEMPOTENT = new Set([
  "GetAgent", "ListAgents", "CreateAgent", "DeleteAgent",
  "CreateSession", "GetSession", "ListSessions", "EndSession", "Interrupt", "GetAgentStatus",
  "GetContext", "GetCapacity", "ListEvents", "CreateRoomToken",
]);

/**
 * Retries idempotent unary calls after a lost connection (UNAVAILABLE, or ABORTED/CANCELED that the
 * caller did not ask for), up to `attempts` times with jittered exponential backoff. One request id
 * is sent on every attempt.
 */
export function retryInterceptor(attempts = 4): Interceptor {
  return (next) => async (req) => {
    if (req.stream || !IDEMPOTENT.has(req.method.name)) return await next(req);
    for (let attempt = 1; ; attempt++) {
      try {
        return await next(req);
      } catch (err) {
        const error = ConnectError.from(err);
        if (attempt >= attempts || req.signal.aborted || !RESUMABLE.has(error.code)) throw error;
        if (error.code === Code.ResourceExhausted) throw error; // a full pool: the caller decides
        const ceiling = Math.min(2000, 50 * 2 ** (attempt - 1));
        await new Promise((resolve) => setTimeout(resolve, ceiling / 2 + Math.random() * (ceiling / 2)));
      }
    }
  };
}

/** One client per service on one gRPC transport, and a resumable watch. */
export class AgentGw {
  readonly agents: Client<typeof AgentService>;
  readonly sessions: Client<typeof SessionService>;
  readonly events: Client<typeof EventService>;
  readonly tokens: Client<typeof RoomTokenService>;

  constructor(options: AgentGwOptions) {
    const token = options.bearerToken;
    const transport =
      options.transport ??
      createGrpcTransport({
        baseUrl: options.baseUrl,
        interceptors: [
          retryInterceptor(),
          (next) => async (req) => {
            if (!req.header.has("x-request-id")) req.header.set("x-request-id", newRequestId());
            if (token !== undefined) {
              req.header.set("authorization", `Bearer ${typeof token === "function" ? token() : token}`);
            }
            return await next(req);
          },
        ],
      });
    this.agents = createClient(AgentService, transport);
    this.sessions = createClient(SessionService, transport);
    this.events = createClient(EventService, transport);
    this.tokens = createClient(RoomTokenService, transport);
  }

  /**
   * Matching events in cursor order, live, resuming by cursor by itself (see the file comment).
   * Watching exactly one session ends after its `ended` event; other errors are thrown as they are.
   */
  async *watch(options: WatchOptions = {}): AsyncGenerator<SessionEvent> {
    const filter = {
      sessionIds: options.sessionIds ?? [],
      agentId: options.agentId ?? "",
      roomId: options.roomId ?? "",
      eventTypes: options.eventTypes ?? [],
      labelSelector: options.labelSelector ?? "",
    };
    const single = filter.sessionIds.length === 1;
    let cursor = options.afterCursor;
    if (cursor === undefined && !options.fromOldest) {
      // Read the head first, so nothing arriving while the stream connects is lost.
      cursor = (await this.events.listEvents({ pageSize: 1 }, { signal: options.signal })).headCursor;
    }
    const resumeForMs = options.resumeForMs ?? 60_000;
    let failingSince: number | undefined;
    let failures = 0;
    for (;;) {
      const request: MessageInitShape<typeof WatchEventsRequestSchema> =
        cursor === undefined
          ? { filter, start: StartPosition.OLDEST, maxBatchSize: options.maxBatchSize ?? 0 }
          : {
              filter,
              start: StartPosition.AFTER_CURSOR,
              afterCursor: cursor,
              maxBatchSize: options.maxBatchSize ?? 0,
            };
      try {
        for await (const message of this.events.watchEvents(request, { signal: options.signal })) {
          failingSince = undefined;
          failures = 0;
          const item = message.item;
          if (item.case === "heartbeat") {
            // Every matching event up to it has been sent: resume from there.
            if (cursor === undefined || item.value.cursor > cursor) cursor = item.value.cursor;
            continue;
          }
          const batch = item.case === "event" ? [item.value] : item.case === "batch" ? item.value.events : [];
          for (const event of batch) {
            if (cursor !== undefined && event.cursor <= cursor) continue; // already yielded
            cursor = event.cursor;
            yield event;
            if (single && event.payload.case === "ended") return;
          }
        }
        return; // completed with OK: a single-session watch after its end
      } catch (err) {
        const error = ConnectError.from(err);
        if (options.signal?.aborted || !RESUMABLE.has(error.code)) throw error;
        const now = Date.now();
        failingSince ??= now;
        if (now - failingSince >= resumeForMs) throw error;
        failures += 1;
        const ceiling = Math.min(5000, 50 * 2 ** (failures - 1));
        await new Promise((resolve) => setTimeout(resolve, ceiling / 2 + Math.random() * (ceiling / 2)));
      }
    }
  }
}

export type { WatchEventsRequest };

import { createServer as createHttp1Server } from "node:http";
import { createServer as createHttp2Server, type Http2Session } from "node:http2";
import { createServer as createNetServer, type Socket } from "node:net";
import type { Logger } from "../log.js";

import type { ConnectNodeAdapterOptions } from "@connectrpc/connect-node";

/** A request handler for both HTTP/1.1 and HTTP/2 requests (Node's compatibility API), as Connect's adapter is. */
export type NodeHandler = NonNullable<ConnectNodeAdapterOptions["fallback"]>;
export type NodeRequest = Parameters<NodeHandler>[0];
export type NodeResponse = Parameters<NodeHandler>[1];

/** A listening port that serves HTTP/1.1 and h2c (prior knowledge) with one handler. */
export interface Listener {
  host: string;
  port: number;
  /** Stops accepting, waits up to `timeoutMs` for in-flight requests, then closes every connection. */
  close(timeoutMs: number): Promise<void>;
}

// Every HTTP/2 connection without TLS starts with this client preface (RFC 9113, 3.4).
const http2Preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/**
 * Node's plaintext http2 server ignores allowHTTP1, so one port serving gRPC (h2c) and curl
 * (HTTP/1.1) needs a net.Server that peeks at the first bytes and hands the socket over.
 */
export async function listen(handler: NodeHandler, host: string, port: number, log: Logger): Promise<Listener> {
  let inFlight = 0;
  let drained: (() => void) | undefined;
  const tracked: NodeHandler = (req, res) => {
    inFlight++;
    res.once("close", () => {
      inFlight--;
      if (inFlight === 0) drained?.();
    });
    handler(req, res);
  };

  const http1 = createHttp1Server(tracked);
  // Bounded request reading: slow or stuck clients cannot hold a connection forever.
  http1.headersTimeout = 30_000;
  http1.keepAliveTimeout = 65_000;
  // Session memory above the largest message (maxRequestBytes), else nghttp2 resets big calls with ENHANCE_YOUR_CALM.
  const http2 = createHttp2Server({ settings: { maxConcurrentStreams: 1000 }, maxSessionMemory: 64 }, tracked);
  const sessions = new Set<Http2Session>();
  http2.on("session", (session: Http2Session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });

  const sockets = new Set<Socket>();
  const net = createNetServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.on("error", (err) => log.debug({ err: err.message }, "client connection error"));
    let head = Buffer.alloc(0);
    const sniff = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const n = Math.min(head.length, http2Preface.length);
      const isHttp2 = head.subarray(0, n).equals(http2Preface.subarray(0, n));
      if (isHttp2 && head.length < http2Preface.length) return; // need more bytes to decide
      socket.off("data", sniff);
      socket.pause();
      socket.unshift(head);
      if (isHttp2) {
        // The http2 session reads what was unshifted itself; resuming here would lose it.
        http2.emit("connection", socket);
      } else {
        http1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", sniff);
  });

  await new Promise<void>((resolve, reject) => {
    net.once("error", reject);
    net.listen(port, host, () => {
      net.off("error", reject);
      resolve();
    });
  });
  const address = net.address();
  const boundPort = typeof address === "object" && address ? address.port : port;

  return {
    host,
    port: boundPort,
    async close(timeoutMs) {
      const closed = new Promise<void>((resolve) => net.close(() => resolve()));
      // GOAWAY lets running HTTP/2 streams finish but starts no new ones.
      for (const session of sessions) session.goaway();
      http1.closeIdleConnections();
      if (inFlight > 0) await waitUntil(() => inFlight === 0, timeoutMs, (wake) => (drained = wake));
      if (inFlight > 0) log.warn({ inFlight }, "shutdown timeout reached; closing connections with calls in flight");
      // Let clients read the last frames (a stream's trailers) and close their sessions themselves.
      for (const session of sessions) session.close();
      await waitUntil(() => sessions.size === 0, 1_000, (wake) => sessions.forEach((s) => s.once("close", wake)));
      for (const session of sessions) session.destroy();
      http1.closeAllConnections();
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}

/** Resolves when `done()` holds (checked at each wake-up) or after `timeoutMs`. */
function waitUntil(done: () => boolean, timeoutMs: number, onWake: (wake: () => void) => void): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    const wake = () => {
      if (!done()) return;
      clearTimeout(timer);
      resolve();
    };
    onWake(wake);
    wake();
  });
}

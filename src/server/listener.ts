import { createServer as createHttp1Server, type IncomingMessage } from "node:http";
import { constants as http2, createServer as createHttp2Server, type Http2ServerRequest, type Http2Session } from "node:http2";
import { createServer as createNetServer, type Socket } from "node:net";
import { createServer as createTlsServer, type TLSSocket } from "node:tls";
import type { ConnectionsConfig } from "../config/config.js";
import type { Logger } from "../shared/log.js";
import type { TlsCertificate } from "./tls.js";

import type { ConnectNodeAdapterOptions } from "@connectrpc/connect-node";

/** A request handler for both HTTP/1.1 and HTTP/2 requests (Node's compatibility API), as Connect's adapter is. */
export type NodeHandler = NonNullable<ConnectNodeAdapterOptions["fallback"]>;
export type NodeRequest = Parameters<NodeHandler>[0];
export type NodeResponse = Parameters<NodeHandler>[1];

/** A listening port that serves HTTP/1.1 and h2c (prior knowledge), or HTTP/1.1 and h2 over TLS, with one handler. */
export interface Listener {
  host: string;
  port: number;
  /** Serves new TLS connections with `certificate`; connections already open keep theirs. */
  setCertificate(certificate: TlsCertificate): void;
  /**
   * Before close(), while a load balancer takes the daemon out: HTTP/1.1 answers say
   * `connection: close`, so that keep-alive clients open their next connection (through the
   * balancer, to another daemon) instead of racing the close of an idle one.
   */
  drain(): void;
  /** Stops accepting, waits up to `timeoutMs` for in-flight requests, then closes every connection. */
  close(timeoutMs: number): Promise<void>;
}

// Every HTTP/2 connection without TLS starts with this client preface (RFC 9113, 3.4).
const http2Preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
// A TLS connection starts with a handshake record (RFC 8446, 5.1: content type 22).
const tlsHandshakeRecord = 0x16;
// ALPN (RFC 7301): h2 when the client offers it, else HTTP/1.1 (also for clients that offer none).
const alpnProtocols = ["h2", "http/1.1"];
/** What a plaintext client of a TLS port is told, instead of a TLS alert it cannot read. */
const plaintextRefusal = Buffer.from(
  "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n\r\nThis port speaks TLS: use https://.\n",
);

/** How long a connection that ends with an answer to an unfinished request is read after it (lingerAfterAnswer). */
const lingerMs = 1_000;

/** At most one "connection limit reached" line per this long. */
const capLogEveryMs = 60_000;

/** What the listener knows of an HTTP/2 session, for its idle timeout and pings. */
interface SessionState {
  openStreams: number;
  /** When the last stream closed (or the session opened). */
  idleSince: number;
  /**
   * When the peer was last known to be there: the session's start, a stream it opened, or a
   * ping sent (answered or not, awaitingPong says). A peer that opens streams (an agent pushing
   * every 10 s beside its command stream) is not pinged: each ping wakes it for nothing.
   */
  lastHeard: number;
  awaitingPong: boolean;
}

/**
 * Node's plaintext http2 server ignores allowHTTP1, so one port serving gRPC (h2c) and curl
 * (HTTP/1.1) needs a net.Server that peeks at the first bytes and hands the socket over.
 *
 * With a certificate (`tls`), the first bytes must be a TLS handshake, which a tls.Server (never
 * listening itself either) completes, and ALPN chooses between the two servers instead (h2, else
 * HTTP/1.1); a plaintext client is told so in plain HTTP/1.1 and disconnected.
 *
 * Every stage of a connection has a deadline, so that silent or slow clients cannot hold
 * connections (and file descriptors) forever: the first bytes, TLS handshake and HTTP/1 headers
 * (headersTimeout), a whole request (requestTimeout), idle keep-alive connections and HTTP/2
 * sessions (idleTimeout). HTTP/2 sessions with calls open (agents' command streams, open for
 * hours) are kept while their peer answers pings. At most `max` connections are open: a new one
 * beyond replaces the oldest connection that has not sent its first bytes yet, else it is closed.
 */
export async function listen(
  handler: NodeHandler,
  host: string,
  port: number,
  limits: ConnectionsConfig,
  log: Logger,
  tls?: TlsCertificate,
): Promise<Listener> {
  let inFlight = 0;
  let drained: (() => void) | undefined;
  let draining = false;
  const tracked: NodeHandler = (req, res) => {
    inFlight++;
    if (draining && !("stream" in req)) res.setHeader("connection", "close");
    const untilReceived = "stream" in req ? http2RequestDeadline(req, limits.requestTimeoutMs) : undefined;
    stopReadingAfterAnswer(req, res);
    res.once("close", () => {
      clearTimeout(untilReceived);
      inFlight--;
      if (inFlight === 0) drained?.();
    });
    handler(req, res);
  };

  const http1 = createHttp1Server(
    {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.idleTimeoutMs,
      connectionsCheckingInterval: checkEvery(limits),
    },
    tracked,
  );
  // A request that expects "100 Continue" goes to the handler before its body is sent, rather than
  // being told to send it at once (Node's default): the front door says so only once it admits the call.
  http1.on("checkContinue", tracked);
  // Node enforces headersTimeout and requestTimeout (and closeIdleConnections works) only for
  // servers that emitted "listening", which starts its connection tracking; this one never listens
  // itself, it is handed sockets.
  http1.emit("listening");
  // Session memory above the largest message (request-limits.ts: Push's 16 MiB), else nghttp2 resets big calls with ENHANCE_YOUR_CALM.
  const http2Server = createHttp2Server({ settings: { maxConcurrentStreams: 1000 }, maxSessionMemory: 64 }, tracked);
  const tlsServer =
    tls &&
    // The handshake must be done within the headers timeout, as a plaintext client's first bytes and headers.
    createTlsServer({ cert: tls.cert, key: tls.key, ALPNProtocols: alpnProtocols, handshakeTimeout: limits.headersTimeoutMs }, (secure: TLSSocket) =>
      (secure.alpnProtocol === "h2" ? http2Server : http1).emit("connection", secure),
    ).on("tlsClientError", (err, secure) => {
      // Listening here makes closing the connection ours (a handshake timeout would leave it open).
      log.debug({ err: err.message }, "client TLS error");
      secure.destroy();
    });
  const sessions = new Map<Http2Session, SessionState>();
  http2Server.on("session", (session: Http2Session) => {
    const state: SessionState = { openStreams: 0, idleSince: Date.now(), lastHeard: Date.now(), awaitingPong: false };
    sessions.set(session, state);
    session.on("stream", (stream) => {
      state.openStreams++;
      state.lastHeard = Date.now();
      state.awaitingPong = false;
      stream.once("close", () => {
        state.openStreams--;
        if (state.openStreams === 0) state.idleSince = Date.now();
      });
    });
    session.once("close", () => sessions.delete(session));
  });
  const sessionCheck = setInterval(() => checkSessions(sessions, limits, log), checkEvery(limits)).unref();

  const sockets = new Set<Socket>();
  // Connections that have not sent enough to be handed over, oldest first: the first to go at the cap.
  const sniffing = new Set<Socket>();
  let capHits = 0;
  let lastCapLog = -Infinity;
  const net = createNetServer((socket) => {
    if (sockets.size >= limits.max) {
      capHits++;
      if (Date.now() - lastCapLog >= capLogEveryMs) {
        log.warn({ max: limits.max, closed: capHits }, "connection limit reached: closing connections that have sent nothing, else new ones");
        lastCapLog = Date.now();
        capHits = 0;
      }
      const silent = sniffing.values().next().value;
      if (!silent) {
        socket.destroy();
        return;
      }
      // Forgotten at once: its "close" comes later, and the next new connection must pick another.
      sniffing.delete(silent);
      sockets.delete(silent);
      silent.destroy();
    }
    sockets.add(socket);
    sniffing.add(socket);
    socket.once("close", () => {
      sockets.delete(socket);
      sniffing.delete(socket);
    });
    socket.on("error", (err) => log.debug({ err: err.message }, "client connection error"));
    // Dead peers of long HTTP/1 responses are found by the kernel; HTTP/2 sessions are pinged.
    socket.setKeepAlive(true, limits.pingIntervalMs);
    const firstBytes = setTimeout(() => socket.destroy(), limits.headersTimeoutMs);
    /**
     * Hands the connection to the server of its protocol (TLS first, whose handshake then reads
     * what was unshifted): it is no longer silent, nor bound by the first deadline.
     */
    const handOver = (server: { emit(event: "connection", socket: Socket): boolean }) => {
      clearTimeout(firstBytes);
      sniffing.delete(socket);
      server.emit("connection", socket);
    };
    let head = Buffer.alloc(0);
    const sniff = (chunk: Buffer) => {
      if (tlsServer) {
        socket.off("data", sniff);
        // Told so, and closed by the first deadline if it does not close itself.
        if (chunk[0] !== tlsHandshakeRecord) return void socket.end(plaintextRefusal);
        socket.pause();
        socket.unshift(chunk);
        handOver(tlsServer);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const n = Math.min(head.length, http2Preface.length);
      const isHttp2 = head.subarray(0, n).equals(http2Preface.subarray(0, n));
      if (isHttp2 && head.length < http2Preface.length) return; // need more bytes to decide
      socket.off("data", sniff);
      socket.pause();
      socket.unshift(head);
      if (isHttp2) {
        // The http2 session reads what was unshifted itself; resuming here would lose it.
        handOver(http2Server);
      } else {
        handOver(http1);
        socket.resume();
      }
    };
    socket.on("data", sniff);
    socket.once("close", () => clearTimeout(firstBytes));
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
    setCertificate(certificate) {
      tlsServer?.setSecureContext({ cert: certificate.cert, key: certificate.key });
    },
    drain() {
      draining = true;
      // New calls of HTTP/2 clients go to a new connection (through a balancer, to another daemon); open streams go on.
      for (const session of sessions.keys()) if (!session.destroyed) session.goaway(http2.NGHTTP2_NO_ERROR, maxStreamId);
    },
    async close(timeoutMs) {
      const closed = new Promise<void>((resolve) => net.close(() => resolve()));
      clearInterval(sessionCheck);
      // GOAWAY lets running HTTP/2 streams finish but starts no new ones.
      // (A session destroyed a moment ago is still listed until its "close".)
      await Promise.all([...sessions.keys()].filter((session) => !session.destroyed).map(shutdownNotice));
      for (const session of sessions.keys()) if (!session.destroyed) session.goaway();
      http1.closeIdleConnections();
      if (inFlight > 0)
        await waitUntil(
          () => inFlight === 0,
          timeoutMs,
          (wake) => (drained = wake),
        );
      if (inFlight > 0) log.warn({ inFlight }, "shutdown timeout reached; closing connections with calls in flight");
      // Let clients read the last frames (a stream's trailers) and close their sessions themselves.
      for (const session of sessions.keys()) session.close();
      await waitUntil(
        () => sessions.size === 0,
        1_000,
        (wake) => sessions.forEach((_, s) => s.once("close", wake)),
      );
      for (const session of sessions.keys()) session.destroy();
      http1.closeAllConnections();
      // Stops http1's connection checks (it never listened, so there is nothing else to close).
      http1.close();
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}

/** The largest HTTP/2 stream id: a GOAWAY naming it refuses no stream (RFC 9113, 6.8). */
const maxStreamId = 2 ** 31 - 1;

/**
 * The first of two GOAWAYs (RFC 9113, 6.8): one naming the largest stream id, then a PING. The
 * peer opens no stream after reading the GOAWAY, and answers the PING after it: once the answer is
 * in, every stream it opened before has arrived, so the final GOAWAY refuses none. A single
 * GOAWAY would refuse streams already on their way (REFUSED_STREAM), which clients report as errors.
 */
function shutdownNotice(session: Http2Session): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 1_000);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    try {
      session.goaway(http2.NGHTTP2_NO_ERROR, maxStreamId);
      if (!session.ping(done)) done();
    } catch {
      done(); // closed meanwhile: nothing to announce
    }
  });
}

/** How often deadlines are checked: often enough for short test settings, at most every second. */
function checkEvery(limits: ConnectionsConfig): number {
  return Math.round(Math.max(50, Math.min(1_000, limits.headersTimeoutMs / 4, limits.idleTimeoutMs / 4, limits.pingIntervalMs / 4)));
}

/**
 * Node's HTTP/1 server enforces requestTimeout (the whole request must arrive in time); its HTTP/2
 * server has no such limit, so a stream whose peer has not finished sending its request by then is
 * cancelled here. Server streams (a small request, then a long response) are not affected.
 */
function http2RequestDeadline(req: Http2ServerRequest, timeoutMs: number): NodeJS.Timeout {
  return setTimeout(() => {
    if (!req.stream.state.remoteClose) req.stream.close(http2.NGHTTP2_CANCEL);
  }, timeoutMs);
}

/**
 * Once the answer is complete, the rest of the request is not wanted (a refusal, a size limit):
 * an HTTP/2 stream whose peer is still sending is reset, else the peer stays blocked on flow
 * control until requestTimeout (Node resets such a stream itself only when nothing was read); an
 * HTTP/1.1 connection drops it (lingerAfterAnswer).
 */
function stopReadingAfterAnswer(req: NodeRequest, res: NodeResponse): void {
  if ("stream" in req) {
    const stream = req.stream;
    // Node's compatibility response always ends with trailers, sent some turns of the event loop
    // after "wantTrailers"; a reset before them would lose the answer's status. No event says they
    // are out; the stream's state does (localClose: our END_STREAM has gone). The reset is CANCEL:
    // with NO_ERROR (RFC 9113, 8.1) Node waits for the writable side to finish, and such streams
    // were seen to stay open until shutdown; the answer is complete either way.
    stream.once("wantTrailers", () => {
      const check = () => {
        if (stream.closed || stream.destroyed || stream.state.remoteClose) return;
        if (stream.state.localClose) stream.close(http2.NGHTTP2_CANCEL);
        else setTimeout(check, 10).unref();
      };
      check();
    });
    return;
  }
  const socket = req.socket; // taken now: Node detaches it from the response once answered
  res.once("finish", () => {
    if (!req.complete && !socket.destroyed) lingerAfterAnswer(req, socket);
  });
}

/**
 * The rest of an answered HTTP/1.1 request is read and dropped by Node's parser: a kept-alive
 * connection then serves the next request (requestTimeout bounds how long the rest may take).
 * Node by itself would leave the connection stalled until requestTimeout when the handler paused
 * the request, and, when the answer ends the connection, destroy the socket as soon as the answer
 * is written: with the body still arriving, the kernel then sends a reset that can reach the
 * client before it has read the answer, and the client sees EPIPE instead of the status (RFC 9112,
 * 9.6). Such a connection is closed for writing at once (our FIN after the answer) and destroyed
 * lingerMs later, or as soon as the client closes its side.
 */
function lingerAfterAnswer(req: IncomingMessage, socket: Socket): void {
  // Whatever the handler left listening (a "data" listener, an iterator's "readable") is done with.
  req.removeAllListeners("data").removeAllListeners("readable").resume();
  if (!socket.writableEnded) return;
  // Node's destroySoon() waits for this event to destroy the socket.
  socket.off("finish", socket.destroy);
  const timer = setTimeout(() => socket.destroy(), lingerMs).unref();
  socket.once("close", () => clearTimeout(timer));
}

/** Closes HTTP/2 sessions idle for idleTimeout, pings the others that have been silent for a ping interval, and drops those whose last ping went unanswered. */
function checkSessions(sessions: Map<Http2Session, SessionState>, limits: ConnectionsConfig, log: Logger): void {
  const now = Date.now();
  for (const [session, state] of sessions) {
    if (session.closed || session.destroyed) continue;
    if (state.openStreams === 0) {
      if (now - state.idleSince >= limits.idleTimeoutMs) session.close();
      continue;
    }
    if (now - state.lastHeard < limits.pingIntervalMs) continue;
    if (state.awaitingPong) {
      log.debug({ openStreams: state.openStreams }, "an HTTP/2 peer did not answer a ping; closing its session");
      session.destroy();
      continue;
    }
    state.lastHeard = now;
    state.awaitingPong = session.ping((err) => {
      if (!err) state.awaitingPong = false;
    });
  }
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

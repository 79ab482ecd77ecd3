import { request } from "node:http";

/**
 * An HTTP/1.1 POST whose body is sent chunked, with no Content-Length (fetch sends one for a
 * buffer): a server learns its size only by reading it. Resolves with the answer, or rejects with
 * the error that ended the request before one came.
 */
export function postChunked(url: string, headers: Record<string, string>, body: Buffer): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: "POST", headers: { ...headers, "transfer-encoding": "chunked" } }, (res) => {
      let text = "";
      res.setEncoding("utf8").on("data", (chunk: string) => (text += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on("error", reject);
    for (let at = 0; at < body.length; at += 1024 * 1024) req.write(body.subarray(at, at + 1024 * 1024));
    req.end();
  });
}

// Prints the used heap (bytes) of the Node process whose inspector listens at argv[2] (a ws://
// address), after two full garbage collections: the memory it keeps, whatever its collector's
// schedule. A script of its own because on Node 20 WebSocket needs --experimental-websocket.
const socket = new WebSocket(process.argv[2]);
const waiting = new Map();
let lastId = 0;
socket.onmessage = (event) => {
  const message = JSON.parse(String(event.data));
  const call = waiting.get(message.id);
  if (!call) return;
  waiting.delete(message.id);
  if (message.error) call.reject(new Error(`${message.error.message} (${message.error.code})`));
  else call.resolve(message.result);
};
/** One Chrome DevTools Protocol call. */
const send = (method) =>
  new Promise((resolve, reject) => {
    const id = ++lastId;
    waiting.set(id, { resolve, reject });
    socket.send(JSON.stringify({ id, method }));
  });
await new Promise((resolve, reject) => {
  socket.onopen = resolve;
  socket.onerror = () => reject(new Error(`cannot reach the inspector at ${process.argv[2]}`));
});
// Twice: objects kept only by finalizers and weak callbacks of the first go in the second.
await send("HeapProfiler.collectGarbage");
await send("HeapProfiler.collectGarbage");
const { usedSize } = await send("Runtime.getHeapUsage");
process.stdout.write(`${usedSize}\n`);
socket.close();

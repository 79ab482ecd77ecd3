import type { UniversalHandler, UniversalHandlerFn } from "@connectrpc/connect/protocol";

/** `fn` in the place of `handler`: the same procedure, protocols and content types, for the router to serve. */
export function wrapHandler(handler: UniversalHandler, fn: UniversalHandlerFn): UniversalHandler {
  return Object.assign(fn, {
    protocolNames: handler.protocolNames,
    service: handler.service,
    method: handler.method,
    requestPath: handler.requestPath,
    allowedMethods: handler.allowedMethods,
    supportedContentType: handler.supportedContentType,
  });
}

import type { ServiceImpl } from "@connectrpc/connect";
import type { API as CommandsAPI } from "../../gen/commands/commands_pb.js";
import { unimplemented } from "../server/unimplemented.js";

/** commands.API: the command queue arrives with the diagnostics issue. */
export function commandsService(): ServiceImpl<typeof CommandsAPI> {
  return {
    async *stream() {
      unimplemented("commands.API/Stream");
    },
    report: () => unimplemented("commands.API/Report"),
    submit: () => unimplemented("commands.API/Submit"),
    get: () => unimplemented("commands.API/Get"),
    async *watch() {
      unimplemented("commands.API/Watch");
    },
    cancel: () => unimplemented("commands.API/Cancel"),
  };
}

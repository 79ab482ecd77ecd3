// node-fetch declares its types for the package's index only; this is the module of its Headers.
declare module "node-fetch/src/headers.js" {
  export { Headers as default } from "node-fetch";
}

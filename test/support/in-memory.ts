/**
 * Service-level tests: a service implementation behind connect's in-memory transport
 * (createRouterTransport), without a listener or the front door, on a migrated database of the
 * tests' PostgreSQL. They reach a handler's logic in milliseconds; the end-to-end tests next to
 * them keep checking the whole daemon.
 */
import type { DescService } from "@bufbuild/protobuf";
import { createClient, createRouterTransport, type Client, type Interceptor, type ServiceImpl } from "@connectrpc/connect";
import { afterAll, beforeAll } from "vitest";
import { createLogger } from "../../src/shared/log.js";
import { openStorage, type Storage } from "../../src/storage/database.js";
import { principalKey } from "../../src/tokens/access.js";
import type { Principal } from "../../src/tokens/tokens.js";
import { createTestDatabase, defaultTestServer, type TestDatabase } from "./postgres.js";

/**
 * A client of `impl` in memory, calling as `caller`: the principal the front door would have
 * verified and handed on (none: a call without a credential). Access rules are the front door's
 * and are tested there; here every call reaches its handler.
 */
export function inMemoryClient<S extends DescService>(service: S, impl: ServiceImpl<S>, caller?: Principal): Client<S> {
  const asCaller: Interceptor = (next) => (req) => {
    req.contextValues.set(principalKey, caller);
    return next(req);
  };
  return createClient(
    service,
    createRouterTransport((router) => router.service(service, impl), { router: { interceptors: [asCaller] } }),
  );
}

/** For a test file: a migrated database of the default test server, opened before its tests and dropped after them. */
export function storagePerFile(): () => Storage {
  let database: TestDatabase | undefined;
  let storage: Storage | undefined;
  beforeAll(async () => {
    database = await createTestDatabase(defaultTestServer());
    storage = await openStorage({ databaseUrl: database.url, dataDir: "/nonexistent", log: createLogger("silent") });
  });
  afterAll(async () => {
    await storage?.close();
    await database?.drop();
  });
  return () => {
    if (!storage) throw new Error("the test database is not open (storagePerFile's beforeAll failed or has not run)");
    return storage;
  };
}

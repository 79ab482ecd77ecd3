import { create, createFileRegistry, fromBinary, toBinary, type DescFile, type FileRegistry } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  ServerReflection as ReflectionV1,
  ServerReflectionRequestSchema as RequestV1Schema,
  ServerReflectionResponseSchema as ResponseV1Schema,
  type ServerReflectionRequest as RequestV1,
  type ServerReflectionResponse as ResponseV1,
} from "../../gen/grpc/reflection/v1/reflection_pb.js";
import {
  ServerReflection as ReflectionV1alpha,
  ServerReflectionRequestSchema as RequestV1alphaSchema,
  ServerReflectionResponseSchema as ResponseV1alphaSchema,
} from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { rules } from "../tokens/access.js";

/** Clients that generate code ask without a credential: the contracts are public (as /proto/ is). */
export const reflectionV1Access = rules(ReflectionV1, { serverReflectionInfo: "public" });
export const reflectionV1alphaAccess = rules(ReflectionV1alpha, { serverReflectionInfo: "public" });

/** A registry of the given files and everything they import, for reflection to answer from. */
export function reflectionRegistry(files: DescFile[]): FileRegistry {
  const ordered: DescFile[] = [];
  const seen = new Set<string>();
  const visit = (f: DescFile) => {
    if (seen.has(f.name)) return;
    seen.add(f.name);
    f.dependencies.forEach(visit); // imports first, as createFileRegistry resolves them in order
    ordered.push(f);
  };
  files.forEach(visit);
  return createFileRegistry(create(FileDescriptorSetSchema, { file: ordered.map((f) => f.proto) }));
}

/** gRPC server reflection (v1): lists the served services and sends their file descriptors. */
export function reflectionV1(registry: FileRegistry, serviceNames: string[]): ServiceImpl<typeof ReflectionV1> {
  return {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) yield answer(registry, serviceNames, req);
    },
  };
}

/** The same for v1alpha, which older clients use: its messages are wire-identical to v1's. */
export function reflectionV1alpha(registry: FileRegistry, serviceNames: string[]): ServiceImpl<typeof ReflectionV1alpha> {
  return {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) {
        const v1 = fromBinary(RequestV1Schema, toBinary(RequestV1alphaSchema, req));
        yield fromBinary(ResponseV1alphaSchema, toBinary(ResponseV1Schema, answer(registry, serviceNames, v1)));
      }
    },
  };
}

function answer(registry: FileRegistry, serviceNames: string[], req: RequestV1): ResponseV1 {
  const base = { validHost: req.host, originalRequest: req };
  const notFound = (message: string) =>
    create(ResponseV1Schema, { ...base, messageResponse: { case: "errorResponse", value: { errorCode: 5, errorMessage: message } } });
  const files = (file: DescFile | undefined, what: string) =>
    file
      ? create(ResponseV1Schema, {
          ...base,
          messageResponse: { case: "fileDescriptorResponse", value: { fileDescriptorProto: withDependencies(file) } },
        })
      : notFound(`${what} not found`);

  const request = req.messageRequest;
  switch (request.case) {
    case "listServices":
      return create(ResponseV1Schema, {
        ...base,
        messageResponse: { case: "listServicesResponse", value: { service: serviceNames.map((name) => ({ name })) } },
      });
    case "fileByFilename":
      return files(registry.getFile(request.value), `file ${request.value}`);
    case "fileContainingSymbol":
      return files(fileOfSymbol(registry, request.value), `symbol ${request.value}`);
    case "fileContainingExtension":
      return notFound(`extension ${request.value.containingType}.${request.value.extensionNumber}`);
    case "allExtensionNumbersOfType":
      return registry.getMessage(request.value)
        ? create(ResponseV1Schema, {
            ...base,
            messageResponse: { case: "allExtensionNumbersResponse", value: { baseTypeName: request.value, extensionNumber: [] } },
          })
        : notFound(`type ${request.value}`);
    default:
      return create(ResponseV1Schema, {
        ...base,
        messageResponse: { case: "errorResponse", value: { errorCode: 3, errorMessage: "empty reflection request" } },
      });
  }
}

function fileOfSymbol(registry: FileRegistry, symbol: string): DescFile | undefined {
  const name = symbol.replace(/^\./, "");
  const desc = registry.get(name);
  if (desc) return desc.file;
  // A method: package.Service.Method.
  const service = registry.getService(name.slice(0, name.lastIndexOf(".")));
  return service?.methods.some((m) => m.name === name.slice(name.lastIndexOf(".") + 1)) ? service.file : undefined;
}

/** The file and everything it imports, each once, serialized. */
function withDependencies(file: DescFile): Uint8Array[] {
  const seen = new Set<string>();
  const out: Uint8Array[] = [];
  const visit = (f: DescFile) => {
    if (seen.has(f.name)) return;
    seen.add(f.name);
    out.push(toBinary(FileDescriptorProtoSchema, f.proto));
    f.dependencies.forEach(visit);
  };
  visit(file);
  return out;
}

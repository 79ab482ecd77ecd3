#!/usr/bin/env bash
# Generates the Python gRPC stubs of Specta's contracts into OUT_DIR:
#   OUT_DIR/metrics/metrics_pb2.py, metrics_pb2_grpc.py          (from proto/)
#   OUT_DIR/health/grpc/health/v1/health_pb2.py, health_pb2_grpc.py (grpc.health.v1)
# The health stubs live in their own folder: generated at OUT_DIR's top level, a
# grpc/ folder would sit next to the real `grpc` module on sys.path (client.py
# grafts them onto the real package instead).
#
# Uses Debian's protoc (protobuf-compiler) and grpc_python_plugin
# (protobuf-compiler-grpc), NOT the protoc bundled in python3-grpc-tools: that one
# is too old for proto3 `optional` fields (metrics.Result.reason is one).
set -euo pipefail

if [[ $# -ne 1 || -z "$1" ]]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 64
fi
out=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
health_root=/usr/share/grpc-proto

missing=()
command -v protoc >/dev/null || missing+=("protoc (Debian package protobuf-compiler)")
command -v grpc_python_plugin >/dev/null || missing+=("grpc_python_plugin (Debian package protobuf-compiler-grpc)")
[[ -f $health_root/grpc/health/v1/health.proto ]] || missing+=("$health_root/grpc/health/v1/health.proto (Debian package grpc-proto)")
# The well-known types (google/protobuf/timestamp.proto, ...) that metrics.proto imports:
# libprotobuf-dev puts them in /usr/include, python3-grpc-tools ships a copy.
wkt=""
for dir in /usr/include /usr/lib/python3/dist-packages/grpc_tools/_proto; do
  if [[ -f $dir/google/protobuf/timestamp.proto ]]; then wkt=$dir; break; fi
done
[[ -n $wkt ]] || missing+=("google/protobuf/*.proto (Debian package libprotobuf-dev or python3-grpc-tools)")
if [[ ${#missing[@]} -gt 0 ]]; then
  printf 'generate.sh: missing %s\n' "${missing[@]}" >&2
  exit 69
fi

plugin=$(command -v grpc_python_plugin)
mkdir -p "$out/health"
rm -rf "$out/metrics" "$out/health/grpc"

protoc --version >&2
protoc -I "$root/proto" -I "$wkt" \
  --plugin=protoc-gen-grpc_python="$plugin" \
  --python_out="$out" --grpc_python_out="$out" \
  metrics/metrics.proto
protoc -I "$health_root" \
  --plugin=protoc-gen-grpc_python="$plugin" \
  --python_out="$out/health" --grpc_python_out="$out/health" \
  grpc/health/v1/health.proto

echo "generate.sh: stubs written to $out" >&2
